//! An image: layers plus its config and manifest, assembled into the exact bytes that
//! get digested, written to a layout and pushed.

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::{
    ConfigBuilder, Descriptor, Digest, ImageConfigurationBuilder, ImageManifestBuilder, MediaType,
    Os, RootFsBuilder,
};

use crate::blob::{canonical_json, sha256};
use crate::elf::Arch;
use crate::error::Result;
use crate::layer::Layer;
use crate::provenance::Provenance;

/// Registry part of the local references, the one the chart defaults to. It is never
/// pulled from: the images are imported into the node's containerd.
pub const LOCAL_REGISTRY: &str = "localhost";

/// What an image is made of and how it runs.
#[derive(Debug, Clone)]
pub struct Definition {
    /// Repository name without registry (`eni-agent`); also the title label.
    pub name: String,
    /// Tag; also the version label.
    pub tag: String,
    pub description: String,
    pub arch: Arch,
    /// `uid:gid`, `None` for root.
    pub user: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    /// Labels beyond the org.opencontainers.image.* set.
    pub labels: BTreeMap<String, String>,
    pub layers: Vec<Layer>,
}

/// An assembled image.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub tag: String,
    /// `localhost/<name>:<tag>`.
    pub reference: String,
    pub arch: Arch,
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Image {
    /// Builds config and manifest for `definition`, labelled from `provenance`.
    pub fn assemble(definition: Definition, provenance: &Provenance) -> Result<Image> {
        let created = provenance.created()?;
        let mut labels: BTreeMap<String, String> = [
            ("title", definition.name.clone()),
            ("version", definition.tag.clone()),
            ("revision", provenance.revision.clone()),
            ("source", provenance.source.clone()),
            ("created", created.clone()),
            ("licenses", env!("CARGO_PKG_LICENSE").to_owned()),
            ("description", definition.description.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("org.opencontainers.image.{k}"), v))
        .collect();
        labels.extend(definition.labels.clone());
        let labels: HashMap<String, String> = labels.into_iter().collect();

        let mut runtime = ConfigBuilder::default()
            .env(definition.env.clone())
            .labels(labels.clone());
        if let Some(user) = &definition.user {
            runtime = runtime.user(user.clone());
        }
        if let Some(entrypoint) = &definition.entrypoint {
            runtime = runtime.entrypoint(entrypoint.clone());
        }
        if let Some(cmd) = &definition.cmd {
            runtime = runtime.cmd(cmd.clone());
        }
        let config = ImageConfigurationBuilder::default()
            .created(created)
            .architecture(definition.arch.oci_name())
            .os(Os::Linux)
            .config(runtime.build()?)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(
                        definition
                            .layers
                            .iter()
                            .map(|l| l.diff_id.clone())
                            .collect::<Vec<_>>(),
                    )
                    .build()?,
            )
            .build()?;
        let config = canonical_json(&config)?;
        let config_digest = sha256(&config);

        let layer_descriptors = definition
            .layers
            .iter()
            .map(|l| descriptor(MediaType::ImageLayerGzip, l.blob.len(), &l.digest))
            .collect::<Result<Vec<_>>>()?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(
                MediaType::ImageConfig,
                config.len(),
                &config_digest,
            )?)
            .layers(layer_descriptors)
            .annotations(labels)
            .build()?;
        let manifest = canonical_json(&manifest)?;
        Ok(Image {
            reference: format!("{LOCAL_REGISTRY}/{}:{}", definition.name, definition.tag),
            name: definition.name,
            tag: definition.tag,
            arch: definition.arch,
            layers: definition.layers,
            config_digest,
            manifest_digest: sha256(&manifest),
            config,
            manifest,
        })
    }

    /// Bytes a pull transfers besides the manifest: compressed layers and the config.
    pub fn compressed_size(&self) -> u64 {
        let layers: usize = self.layers.iter().map(|l| l.blob.len()).sum();
        (layers + self.config.len()) as u64
    }
}

pub(crate) fn descriptor(media_type: MediaType, size: usize, digest: &str) -> Result<Descriptor> {
    let digest: Digest = digest.parse()?;
    Ok(Descriptor::new(media_type, size as u64, digest))
}
