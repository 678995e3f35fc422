//! `eni-image`: builds eni-operator's container images as OCI layout tars, optionally
//! pushes them, and inspects layout tars.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use eni_image::layout;
use eni_image::product::{self, Inputs};
use eni_image::provenance;
use eni_image::push::{self, Pusher};
use eni_image::summary::{self, Record};
use eni_image::testbed;
use eni_image::{Error, Image, Provenance, Result};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "eni-image",
    version,
    about = "Builds eni-operator's container images without a container daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build eni-operator and eni-agent from release binaries.
    Build {
        /// Directory with eni-operator, eni-agent and eni-cni (cargo's target/release).
        #[arg(long)]
        bins: PathBuf,
        /// Directory with the portmap and bandwidth CNI plugins.
        #[arg(long, default_value = "/usr/lib/cni")]
        cni_plugins: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Build the test bed's eni-testpod and eni-pause from a static busybox.
    TestImages {
        /// Debian's busybox-static binary.
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Check layout tars blob by blob and print what they hold.
    Inspect {
        /// Layout tars written by build or test-images.
        #[arg(required = true)]
        layouts: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct Common {
    /// Directory for the layout tars and images.json.
    #[arg(long)]
    out: PathBuf,
    /// Version label and tag of the product images (default: the workspace version).
    #[arg(long)]
    version: Option<String>,
    /// Source label (default: git remote origin, else Cargo.toml's repository, else "unknown").
    #[arg(long)]
    source: Option<String>,
    /// Every timestamp in the images (default: commit time of HEAD, else 0).
    #[arg(long, env = "SOURCE_DATE_EPOCH")]
    source_date_epoch: Option<u64>,
    /// The git checkout the revision, source and epoch come from.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Also push to <REGISTRY/PREFIX>/<name>:<tag> (credentials: ENI_REGISTRY_USERNAME,
    /// ENI_REGISTRY_PASSWORD; anonymous when unset).
    #[arg(long, value_name = "REGISTRY/PREFIX")]
    push: Option<String>,
    /// Talk plain HTTP to the registry (e.g. localhost:5000).
    #[arg(long, requires = "push")]
    insecure: bool,
}

impl Common {
    fn provenance(&self) -> Provenance {
        provenance::discover(
            &self.repo,
            self.version.clone(),
            self.source.clone(),
            self.source_date_epoch,
        )
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Build {
            bins,
            cni_plugins,
            common,
        } => {
            let provenance = common.provenance();
            let inputs = Inputs { bins, cni_plugins };
            timed("building eni-operator and eni-agent", || {
                product::build(&inputs, &provenance)
            })
            .and_then(|images| emit(&images, &common, &provenance))
        }
        Cmd::TestImages { busybox, common } => {
            let provenance = common.provenance();
            timed("building eni-testpod and eni-pause", || {
                testbed::build(&busybox, &provenance)
            })
            .and_then(|images| emit(&images, &common, &provenance))
        }
        Cmd::Inspect { layouts } => layouts.iter().try_for_each(|l| inspect(l)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eni-image: {e}");
            ExitCode::FAILURE
        }
    }
}

fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let out = f()?;
    tracing::info!("{what}: {:.1}s", start.elapsed().as_secs_f64());
    Ok(out)
}

/// Writes each image's layout tar (checked by reading it back), pushes if asked, prints
/// a line per image and updates images.json.
fn emit(images: &[Image], common: &Common, provenance: &Provenance) -> Result<()> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&common.out).map_err(io("creating", &common.out))?;
    let out = common
        .out
        .canonicalize()
        .map_err(io("resolving", &common.out))?;
    let pusher = match &common.push {
        Some(_) => Some((
            Pusher::new(common.insecure, push::auth_from_env())?,
            tokio::runtime::Runtime::new().map_err(io("starting the async runtime for", &out))?,
        )),
        None => None,
    };
    let mut records = Vec::new();
    for image in images {
        let tar_path = out.join(format!("{}.oci.tar", image.name));
        let tar = layout::pack(image, provenance.epoch)?;
        layout::unpack(&tar, &tar_path.to_string_lossy())?;
        let partial = tar_path.with_extension("tar.partial");
        std::fs::write(&partial, &tar).map_err(io("writing", &partial))?;
        std::fs::rename(&partial, &tar_path).map_err(io("renaming", &partial))?;
        let pushed = match (&pusher, &common.push) {
            (Some((pusher, runtime)), Some(prefix)) => {
                let target = push::target_reference(prefix, image)?;
                timed(&format!("pushing {target}"), || {
                    runtime.block_on(pusher.push(image, &target))
                })?;
                Some(target)
            }
            _ => None,
        };
        let size = image.compressed_size();
        println!(
            "{:<32} {} {:>10} bytes ({:.1} MiB compressed)",
            image.reference,
            image.manifest_digest,
            size,
            size as f64 / 1048576.0
        );
        if let Some(target) = &pushed {
            println!("  pushed {target}@{}", image.manifest_digest);
        }
        records.push(Record {
            name: image.name.clone(),
            reference: image.reference.clone(),
            digest: image.manifest_digest.clone(),
            layout_tar: tar_path,
            compressed_size: size,
            pushed,
        });
    }
    summary::update(&out, &records)?;
    tracing::info!("wrote {}", out.join(summary::FILE_NAME).display());
    Ok(())
}

fn inspect(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "reading",
        path: path.to_owned(),
        source,
    })?;
    for image in layout::unpack(&bytes, &path.to_string_lossy())? {
        println!(
            "{} {} (tag {})",
            image.reference.as_deref().unwrap_or("(no name)"),
            image.manifest_digest,
            image.tag.as_deref().unwrap_or("-")
        );
        if let Some(config) = image.config.config() {
            println!(
                "  user:       {}",
                config.user().as_deref().unwrap_or("root")
            );
            println!(
                "  entrypoint: {:?}",
                config.entrypoint().clone().unwrap_or_default()
            );
            println!(
                "  cmd:        {:?}",
                config.cmd().clone().unwrap_or_default()
            );
            let mut labels: Vec<_> = config
                .labels()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            labels.sort();
            for (k, v) in labels {
                println!("  label {k}={v}");
            }
        }
        for (layer, descriptor) in image.layers.iter().zip(image.manifest.layers()) {
            println!(
                "  layer {} ({} bytes)",
                descriptor.digest(),
                descriptor.size()
            );
            for e in layer {
                let kind = match &e.kind {
                    layout::EntryKind::File => "f".to_owned(),
                    layout::EntryKind::Dir => "d".to_owned(),
                    layout::EntryKind::Symlink { target } => format!("l -> {target}"),
                    layout::EntryKind::Other => "?".to_owned(),
                };
                println!(
                    "    {:o} {}:{} {:>9} /{} {kind}",
                    e.mode, e.uid, e.gid, e.size, e.path
                );
            }
        }
    }
    Ok(())
}
