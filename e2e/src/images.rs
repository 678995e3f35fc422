//! The container images real nodes run, as OCI layout tars that each node's containerd
//! imports (there is no registry): the product images built by `eni-image` from the
//! workspace's debug binaries (the ones the stand-in bed runs too, so no release build
//! is needed), and the test pod and sandbox images from Debian's static busybox.
//!
//! Tars are rebuilt only when one of their inputs is newer than the tar.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use eni_image::{Image, layout, product, provenance, testbed};

/// The pods' image: busybox sh, ping, nc, httpd.
pub const TESTPOD: &str = "localhost/eni-testpod:1";
/// The sandbox (pause) image containerd pins.
pub const PAUSE: &str = "localhost/eni-pause:1";
/// Repositories of the product images (the chart's `images.*.repository`).
pub const OPERATOR_REPO: &str = "localhost/eni-operator";
pub const AGENT_REPO: &str = "localhost/eni-agent";

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("building images: {0}")]
    Build(#[from] eni_image::Error),
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image {0} was not built")]
    Missing(String),
    #[error("building the reference CNI plugins: {0}")]
    Plugins(String),
}

/// Layout tars of the bed's images, and the product images' tag.
#[derive(Clone, Debug)]
pub struct BedImages {
    pub tars: Vec<PathBuf>,
    /// Tag of eni-operator and eni-agent (the workspace version).
    pub product_tag: String,
    /// Where the product binaries were taken from and the tars written (for images
    /// built later: [`build_agent_version`]).
    bins: PathBuf,
    out: PathBuf,
}

/// The test images' busybox (Debian's busybox-static).
const BUSYBOX: &str = "/bin/busybox";

/// The chained plugins the agent image ships, built by `images/cni-plugins.sh` (as
/// `images/build.sh` does), and their origin label.
fn cni_plugins() -> Result<(PathBuf, String), ImagesError> {
    let script = crate::repo_root().join("images/cni-plugins.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|source| io(&script, source))?;
    if !out.status.success() {
        return Err(ImagesError::Plugins(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let version = dir
        .file_name()
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        dir,
        format!("github.com/containernetworking/plugins@{version}"),
    ))
}

/// Builds (or reuses) the four tars in `out` from the binaries in `bins`.
pub fn build(bins: &Path, out: &Path) -> Result<BedImages, ImagesError> {
    std::fs::create_dir_all(out).map_err(|source| io(out, source))?;
    let prov = provenance::discover(&crate::repo_root(), None, None, None);
    let product_tars = [
        out.join("eni-operator.oci.tar"),
        out.join("eni-agent.oci.tar"),
    ];
    let (inputs, input_files) = product_inputs(bins)?;
    if stale(&product_tars, &input_files) {
        let images = product::build(&inputs, &prov)?;
        write_tars(&images, &product_tars, prov.epoch)?;
    }
    let test_tars = [
        out.join("eni-testpod.oci.tar"),
        out.join("eni-pause.oci.tar"),
    ];
    if stale(&test_tars, &[PathBuf::from(BUSYBOX)]) {
        let images = testbed::build(Path::new(BUSYBOX), &prov)?;
        write_tars(&images, &test_tars, prov.epoch)?;
    }
    Ok(BedImages {
        tars: product_tars.into_iter().chain(test_tars).collect(),
        product_tag: prov.version,
        bins: bins.to_path_buf(),
        out: out.to_path_buf(),
    })
}

/// What the product images are built from, and those files (for staleness).
fn product_inputs(bins: &Path) -> Result<(product::Inputs, Vec<PathBuf>), ImagesError> {
    let (plugins, plugins_origin) = cni_plugins()?;
    let files = ["eni-operator", "eni-agent", "eni-cni"]
        .iter()
        .map(|b| bins.join(b))
        .chain(["portmap", "bandwidth"].iter().map(|p| plugins.join(p)))
        .collect();
    let inputs = product::Inputs {
        bins: bins.to_path_buf(),
        cni_plugins: plugins,
        cni_plugins_origin: Some(plugins_origin),
    };
    Ok((inputs, files))
}

/// The agent image again, as version `version` (or reused when current): the same
/// binaries under another tag and version label, so another config digest and image
/// id, as a release would be. Upgrade trials roll the DaemonSet to it. Returns the tar
/// and the image's reference.
pub fn build_agent_version(
    images: &BedImages,
    version: &str,
) -> Result<(PathBuf, String), ImagesError> {
    let prov = provenance::discover(&crate::repo_root(), Some(version.to_owned()), None, None);
    let tar = images.out.join(format!("eni-agent-{version}.oci.tar"));
    let (inputs, input_files) = product_inputs(&images.bins)?;
    if stale(std::slice::from_ref(&tar), &input_files) {
        let built = product::build(&inputs, &prov)?;
        let agent = built
            .iter()
            .find(|i| i.name == "eni-agent")
            .ok_or_else(|| ImagesError::Missing("eni-agent".to_owned()))?;
        write_tar(agent, &tar, prov.epoch)?;
    }
    Ok((tar, format!("{AGENT_REPO}:{version}")))
}

/// Writes each of `images` to the tar in `tars` named after it.
fn write_tars(images: &[Image], tars: &[PathBuf], epoch: u64) -> Result<(), ImagesError> {
    for tar in tars {
        let file = tar.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        let name = file.trim_end_matches(".oci.tar");
        let image = images
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| ImagesError::Missing(name.to_owned()))?;
        write_tar(image, tar, epoch)?;
    }
    Ok(())
}

/// Writes `image` as a layout tar to `tar` (whole or not at all).
fn write_tar(image: &Image, tar: &Path, epoch: u64) -> Result<(), ImagesError> {
    let bytes = layout::pack(image, epoch)?;
    let partial = tar.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|source| io(&partial, source))?;
    std::fs::rename(&partial, tar).map_err(|source| io(tar, source))
}

/// True when a tar is missing or older than an input.
fn stale(tars: &[PathBuf], inputs: &[PathBuf]) -> bool {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_input = inputs
        .iter()
        .filter_map(|p| mtime(p))
        .max()
        .unwrap_or(SystemTime::now());
    tars.iter()
        .any(|t| mtime(t).is_none_or(|built| built < newest_input))
}

fn io(path: &Path, source: std::io::Error) -> ImagesError {
    ImagesError::Io {
        path: path.to_path_buf(),
        source,
    }
}
