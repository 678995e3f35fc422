//! The two product images the Helm chart runs: eni-operator and eni-agent.
//!
//! Both start from one shared base layer (dynamic loader and shared libraries of all
//! product executables, accounts, the CA bundle), so a node pulls it once. The release
//! binaries are glibc-linked; the libraries are the host's Debian ones they were linked
//! against.

use std::path::{Path, PathBuf};

use crate::elf::{self, Arch};
use crate::error::{Error, Result};
use crate::image::{Definition, Image};
use crate::layer::LayerBuilder;
use crate::provenance::Provenance;
use crate::rootfs::{self, DebianFiles, NONROOT_ID};

/// Where the images' programs live (on PATH).
const BIN_DIR: &str = "/usr/local/bin";
/// Where the agent image keeps the chained CNI plugins for its init container to copy.
pub const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";
/// The chained plugins the chart can enable.
pub const CNI_PLUGINS: [&str; 2] = ["bandwidth", "portmap"];
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const PATH_ENV: &str = "PATH=/usr/local/bin:/usr/bin:/bin";
/// Debian's nft, which the agent runs to keep its own nftables table (replies to
/// connections the node DNATs); at the same path in the image, on the agent's PATH.
pub const NFT: &str = "/usr/sbin/nft";
const AGENT_PATH_ENV: &str = "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin";
/// Label saying which user the image runs as and why.
pub const LABEL_PRIVILEGES: &str = "io.eni-operator.image.privileges";

/// Where the inputs of the product images are.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Holds eni-operator, eni-agent and eni-cni (cargo's `target/release`).
    pub bins: PathBuf,
    /// Holds portmap and bandwidth (Debian's containernetworking-plugins: /usr/lib/cni).
    pub cni_plugins: PathBuf,
    /// Where the plugins come from when no Debian package holds them (e.g.
    /// `github.com/containernetworking/plugins@v1.10.0`); recorded in a label.
    pub cni_plugins_origin: Option<String>,
}

/// Label naming the source of the chained plugins when they are not Debian's.
pub const LABEL_CNI_PLUGINS: &str = "io.eni-operator.image.cni-plugins";

/// A program of ours, checked to be there before anything else reads it.
fn product_binary(bins: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let path = bins.join(name);
    let data = rootfs::read_input(
        &path,
        &format!("{name} binary"),
        "build it with `cargo build --release -p eni-operator -p eni-node-agent --bins` or pass --bins",
    )?;
    Ok((path, data))
}

fn one_arch(executables: &[&Path]) -> Result<Arch> {
    let mut arch = None;
    for exe in executables {
        let this = elf::inspect(exe)?.arch;
        match arch {
            None => arch = Some(this),
            Some(a) if a == this => {}
            Some(a) => {
                return Err(Error::Elf {
                    path: exe.to_path_buf(),
                    reason: format!(
                        "is {} while the others are {}",
                        this.oci_name(),
                        a.oci_name()
                    ),
                });
            }
        }
    }
    arch.ok_or_else(|| Error::Elf {
        path: PathBuf::new(),
        reason: "no executables given".to_owned(),
    })
}

/// Builds eni-operator and eni-agent, tagged with `provenance.version`.
pub fn build(inputs: &Inputs, provenance: &Provenance) -> Result<Vec<Image>> {
    let (operator_path, operator) = product_binary(&inputs.bins, "eni-operator")?;
    let (agent_path, agent) = product_binary(&inputs.bins, "eni-agent")?;
    let (cni_path, cni) = product_binary(&inputs.bins, "eni-cni")?;
    let plugin_paths: Vec<PathBuf> = CNI_PLUGINS
        .iter()
        .map(|p| inputs.cni_plugins.join(p))
        .collect();
    let mut executables = vec![
        operator_path.as_path(),
        agent_path.as_path(),
        cni_path.as_path(),
    ];
    executables.extend(plugin_paths.iter().map(PathBuf::as_path));
    let mut plugins = Vec::new();
    for plugin in &plugin_paths {
        plugins.push(rootfs::read_input(
            plugin,
            "CNI plugin",
            "install Debian's containernetworking-plugins or pass --cni-plugins",
        )?);
    }
    let arch = one_arch(&executables)?;

    let mut base = LayerBuilder::new();
    let mut base_files = DebianFiles::default();
    let in_base = elf::runtime_files(&executables)?;
    for file in &in_base {
        let mode = if file.loader { 0o755 } else { 0o644 };
        base_files.copy(&mut base, &file.image_path, &file.host_path, mode)?;
    }
    rootfs::add_accounts(&mut base)?;
    // The AWS SDK's HTTPS client (rustls-native-certs) trusts the system store only.
    let (bundle, ca_package) = rootfs::ca_bundle()?;
    base.file(CA_BUNDLE, bundle, 0o644)?;
    base_files.record(CA_BUNDLE, ca_package);
    let base = base.build(provenance.epoch)?;

    let mut operator_layer = LayerBuilder::new();
    operator_layer.file(&format!("{BIN_DIR}/eni-operator"), operator, 0o755)?;
    let mut operator_labels = base_files.labels();
    operator_labels.insert(
        LABEL_PRIVILEGES.to_owned(),
        format!("non-root {NONROOT_ID}:{NONROOT_ID}"),
    );
    let operator = Definition {
        name: "eni-operator".to_owned(),
        tag: provenance.version.clone(),
        description: "eni-operator controller: ENI pools, prefixes and their cloud resources"
            .to_owned(),
        arch,
        user: Some(format!("{NONROOT_ID}:{NONROOT_ID}")),
        entrypoint: Some(vec![format!("{BIN_DIR}/eni-operator")]),
        cmd: None,
        env: vec![PATH_ENV.to_owned()],
        labels: operator_labels,
        layers: vec![base.clone(), operator_layer.build(provenance.epoch)?],
    };

    let mut agent_layer = LayerBuilder::new();
    agent_layer.file(&format!("{BIN_DIR}/eni-agent"), agent, 0o755)?;
    agent_layer.file(&format!("{BIN_DIR}/eni-cni"), cni, 0o755)?;
    let mut agent_files = base_files.clone();
    // nft and the libraries only it needs go into the agent's layer, not the shared base.
    let nft = Path::new(NFT);
    rootfs::read_input(nft, "nft", "install Debian's nftables")?;
    for file in elf::runtime_files(&[nft])? {
        if !in_base.contains(&file) {
            agent_files.copy(&mut agent_layer, &file.image_path, &file.host_path, 0o644)?;
        }
    }
    agent_files.copy(&mut agent_layer, NFT, nft, 0o755)?;
    let plugin_files = CNI_PLUGINS.iter().zip(plugin_paths.iter().zip(plugins));
    for (name, (host_path, data)) in plugin_files {
        let image_path = format!("{CNI_PLUGIN_DIR}/{name}");
        if inputs.cni_plugins_origin.is_some() {
            agent_layer.file(&image_path, data, 0o755)?;
        } else {
            agent_files.copy(&mut agent_layer, &image_path, host_path, 0o755)?;
        }
    }
    let mut agent_labels = agent_files.labels();
    if let Some(origin) = &inputs.cni_plugins_origin {
        agent_labels.insert(LABEL_CNI_PLUGINS.to_owned(), origin.clone());
    }
    // Root: the agent moves links between network namespaces and programs the host's
    // routes and rules.
    agent_labels.insert(
        LABEL_PRIVILEGES.to_owned(),
        "root: moves network links between namespaces and programs host routes".to_owned(),
    );
    let agent = Definition {
        name: "eni-agent".to_owned(),
        tag: provenance.version.clone(),
        description: "eni-operator node agent (eni-agent), its CNI plugin (eni-cni), nft and the chained portmap and bandwidth plugins".to_owned(),
        arch,
        user: None,
        entrypoint: Some(vec![format!("{BIN_DIR}/eni-agent")]),
        cmd: None,
        env: vec![AGENT_PATH_ENV.to_owned()],
        labels: agent_labels,
        layers: vec![base, agent_layer.build(provenance.epoch)?],
    };
    Ok(vec![
        Image::assemble(operator, provenance)?,
        Image::assemble(agent, provenance)?,
    ])
}
