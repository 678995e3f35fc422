//! OCI image layouts packed as tar files (`oci-layout`, `index.json`, `blobs/sha256/…`),
//! the form `ctr images import` and registries' tooling take; and the reader that checks
//! one back, blob by blob.

use std::collections::BTreeMap;
use std::io::Read;

use flate2::read::GzDecoder;
use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType,
    OciLayoutBuilder, PlatformBuilder,
};

use crate::blob::{canonical_json, hex_part, sha256};
use crate::error::{Error, Result};
use crate::image::{Image, descriptor};
use crate::layer::LayerBuilder;

/// Tag of the image (OCI's annotation for a reference inside a layout).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Full reference; containerd names the imported image by it.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The layout of `image` as tar bytes; every entry stamped with `epoch`.
pub fn pack(image: &Image, epoch: u64) -> Result<Vec<u8>> {
    let mut manifest = descriptor(
        MediaType::ImageManifest,
        image.manifest.len(),
        &image.manifest_digest,
    )?;
    manifest.set_annotations(Some(
        [
            (REF_NAME.to_owned(), image.tag.clone()),
            (CONTAINERD_NAME.to_owned(), image.reference.clone()),
        ]
        .into_iter()
        .collect(),
    ));
    manifest.set_platform(Some(
        PlatformBuilder::default()
            .architecture(image.arch.oci_name())
            .os("linux")
            .build()?,
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest])
        .build()?;
    let oci_layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()?;

    let mut files = LayerBuilder::new();
    files.file("oci-layout", canonical_json(&oci_layout)?, 0o644)?;
    files.file("index.json", canonical_json(&index)?, 0o644)?;
    let blobs = image.layers.iter().map(|l| (&l.digest, &l.blob)).chain([
        (&image.config_digest, &image.config),
        (&image.manifest_digest, &image.manifest),
    ]);
    for (digest, bytes) in blobs {
        let path = format!("blobs/sha256/{}", hex_part(digest));
        files.file(&path, bytes.clone(), 0o644)?;
    }
    files.tar(epoch)
}

/// Kind of a layer entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink { target: String },
    Other,
}

/// One entry of a layer as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Path without leading `./` or `/`, without trailing `/`.
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
}

/// An image read from a layout, with every blob it references checked.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// `io.containerd.image.name` of its index entry.
    pub reference: Option<String>,
    /// `org.opencontainers.image.ref.name` of its index entry.
    pub tag: Option<String>,
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    /// Entries of each layer, in manifest order.
    pub layers: Vec<Vec<LayerEntry>>,
}

/// Reads a layout tar (`name` is only for messages) and verifies it: the layout marker,
/// that every blob's content matches its name, and for each image of the index that the
/// manifest, config and layers match their descriptors' digests and sizes and that each
/// uncompressed layer matches the config's diff_id.
pub fn unpack(bytes: &[u8], name: &str) -> Result<Vec<LayoutImage>> {
    let bad = |reason: String| Error::Layout {
        layout: name.to_owned(),
        reason,
    };
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the tar: {e}")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| bad(format!("entry path: {e}")))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("reading {path}: {e}")))?;
        files.insert(path, data);
    }

    let marker = files
        .get("oci-layout")
        .ok_or_else(|| bad("no oci-layout file".to_owned()))?;
    let marker: serde_json::Value = serde_json::from_slice(marker)?;
    if marker["imageLayoutVersion"] != "1.0.0" {
        return Err(bad(format!("unexpected oci-layout {marker}")));
    }
    for (path, data) in &files {
        if let Some(hex) = path.strip_prefix("blobs/sha256/")
            && sha256(data) != format!("sha256:{hex}")
        {
            return Err(bad(format!("{path} does not hash to its name")));
        }
    }
    let blob = |d: &Descriptor| -> Result<&Vec<u8>> {
        let digest = d.digest().to_string();
        let data = files
            .get(&format!("blobs/sha256/{}", hex_part(&digest)))
            .ok_or_else(|| bad(format!("missing blob {digest}")))?;
        if data.len() as u64 != d.size() {
            return Err(bad(format!(
                "blob {digest} has {} bytes, its descriptor says {}",
                data.len(),
                d.size()
            )));
        }
        Ok(data)
    };

    let index_bytes = files
        .get("index.json")
        .ok_or_else(|| bad("no index.json".to_owned()))?;
    let index: ImageIndex = serde_json::from_slice(index_bytes)?;
    let mut images = Vec::new();
    for entry in index.manifests() {
        let manifest: ImageManifest = serde_json::from_slice(blob(entry)?)?;
        let config: ImageConfiguration = serde_json::from_slice(blob(manifest.config())?)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(bad(format!(
                "{} layers but {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let mut tar = Vec::new();
            GzDecoder::new(blob(layer)?.as_slice())
                .read_to_end(&mut tar)
                .map_err(|e| bad(format!("layer {} is not gzip: {e}", layer.digest())))?;
            if sha256(&tar) != *diff_id {
                return Err(bad(format!(
                    "layer {} does not match diff_id {diff_id}",
                    layer.digest()
                )));
            }
            layers
                .push(list_layer(&tar).map_err(|e| bad(format!("layer {}: {e}", layer.digest())))?);
        }
        let annotation = |key: &str| {
            entry
                .annotations()
                .as_ref()
                .and_then(|a| a.get(key).cloned())
        };
        images.push(LayoutImage {
            reference: annotation(CONTAINERD_NAME),
            tag: annotation(REF_NAME),
            manifest_digest: entry.digest().to_string(),
            manifest,
            config,
            layers,
        });
    }
    Ok(images)
}

fn list_layer(tar: &[u8]) -> std::io::Result<Vec<LayerEntry>> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink {
                target: entry
                    .link_name()?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
            _ => EntryKind::Other,
        };
        out.push(LayerEntry {
            path: entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned(),
            kind,
            mode: header.mode()?,
            uid: header.uid()?,
            gid: header.gid()?,
            size: header.size()?,
            mtime: header.mtime()?,
        });
    }
    Ok(out)
}
