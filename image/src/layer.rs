//! One filesystem layer: a tar archive built deterministically, then gzip-compressed.
//!
//! Entries are kept sorted by path, so the archive does not depend on the order they were
//! added in; every header carries the build epoch as mtime, numeric ids only (no user or
//! group names), and explicit modes. Parent directories are added as root-owned 0755
//! entries, the way a runtime would create them anyway, so the tar is self-contained.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::{Compression, GzBuilder};
use tar::{EntryType, Header};

use crate::blob::sha256;
use crate::error::{Error, Result};

/// What a path in the layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    File { data: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    content: Content,
    uid: u64,
    gid: u64,
}

/// Collects the entries of one layer.
#[derive(Debug, Default, Clone)]
pub struct LayerBuilder {
    entries: BTreeMap<String, Entry>,
}

/// A finished layer: the compressed blob and the two digests the image needs.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The gzip-compressed tar (the blob the manifest points at).
    pub blob: Vec<u8>,
    /// Digest of `blob`.
    pub digest: String,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// `/usr/local/bin/x` → `usr/local/bin/x`; refuses empty, `.` and `..` components so no
/// entry can escape the root when unpacked.
fn normalise(path: &str) -> Result<String> {
    let bad = |reason| Error::BadImagePath {
        path: path.to_owned(),
        reason,
    };
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(bad("it names the root"));
    }
    if trimmed
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(bad("it has an empty, `.` or `..` component"));
    }
    Ok(trimmed.to_owned())
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A root-owned file.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> Result<&mut Self> {
        self.insert(path, Content::File { data, mode }, 0, 0)
    }

    /// A directory with the given owner (e.g. a world-writable /tmp, a non-root home).
    pub fn dir(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Result<&mut Self> {
        self.insert(path, Content::Dir { mode }, uid, gid)
    }

    /// A root-owned symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        let content = Content::Symlink {
            target: target.to_owned(),
        };
        self.insert(path, content, 0, 0)
    }

    fn insert(&mut self, path: &str, content: Content, uid: u64, gid: u64) -> Result<&mut Self> {
        let path = normalise(path)?;
        // Implicit parents; an explicit dir entry added later replaces an implicit one.
        let components: Vec<&str> = path.split('/').collect();
        for depth in 1..components.len() {
            let parent = components[..depth].join("/");
            let implicit = Entry {
                content: Content::Dir { mode: 0o755 },
                uid: 0,
                gid: 0,
            };
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent, implicit);
                }
                Some(Entry {
                    content: Content::Dir { .. },
                    ..
                }) => {}
                Some(_) => return Err(Error::ConflictingEntry { path: parent }),
            }
        }
        let entry = Entry { content, uid, gid };
        match self.entries.get(&path) {
            Some(existing) if *existing == entry => {}
            // A directory may be given its real mode/owner after being created implicitly.
            Some(Entry {
                content: Content::Dir { .. },
                ..
            }) if matches!(entry.content, Content::Dir { .. }) => {
                self.entries.insert(path, entry);
            }
            Some(_) => return Err(Error::ConflictingEntry { path }),
            None => {
                self.entries.insert(path, entry);
            }
        }
        Ok(self)
    }

    /// Writes the tar with every mtime set to `epoch`, then compresses it.
    pub fn build(&self, epoch: u64) -> Result<Layer> {
        let tar = self.tar(epoch)?;
        let diff_id = sha256(&tar);
        // mtime 0 and no file name in the gzip header; the level is fixed so the bytes
        // depend on the input only (for a given flate2 backend).
        let mut gz = GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), Compression::new(6));
        gz.write_all(&tar)
            .map_err(|source| layer_io("compressing the layer", source))?;
        let blob = gz
            .finish()
            .map_err(|source| layer_io("compressing the layer", source))?;
        Ok(Layer {
            digest: sha256(&blob),
            diff_id,
            blob,
        })
    }

    /// The uncompressed tar (also how an image layout is packed).
    pub(crate) fn tar(&self, epoch: u64) -> Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = Header::new_gnu();
            header.set_uid(entry.uid);
            header.set_gid(entry.gid);
            header.set_mtime(epoch);
            let written = match &entry.content {
                Content::File { data, mode } => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())
                }
                Content::Dir { mode } => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), std::io::empty())
                }
                Content::Symlink { target } => {
                    header.set_entry_type(EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)
                }
            };
            written.map_err(|source| layer_io("writing the layer tar", source))?;
        }
        builder
            .into_inner()
            .map_err(|source| layer_io("writing the layer tar", source))
    }
}

fn layer_io(action: &'static str, source: std::io::Error) -> Error {
    Error::Io {
        action,
        path: "(in memory)".into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insertion_order_does_not_change_the_layer() {
        let mut a = LayerBuilder::new();
        a.file("/etc/passwd", b"root".to_vec(), 0o644).unwrap();
        a.symlink("/bin/sh", "busybox").unwrap();
        a.dir("/tmp", 0o1777, 0, 0).unwrap();
        let mut b = LayerBuilder::new();
        b.dir("/tmp", 0o1777, 0, 0).unwrap();
        b.symlink("/bin/sh", "busybox").unwrap();
        b.file("/etc/passwd", b"root".to_vec(), 0o644).unwrap();
        let (a, b) = (a.build(7).unwrap(), b.build(7).unwrap());
        assert_eq!(a.blob, b.blob);
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, a.diff_id);
    }

    #[test]
    fn paths_that_escape_or_name_the_root_are_refused() {
        let mut layer = LayerBuilder::new();
        for path in ["/", "", "a/../b", "./x", "a//b"] {
            let err = layer.file(path, Vec::new(), 0o644).unwrap_err();
            assert!(matches!(err, Error::BadImagePath { .. }), "{path}: {err}");
        }
    }

    #[test]
    fn one_path_with_two_contents_is_a_conflict() {
        let mut layer = LayerBuilder::new();
        layer.file("/etc/passwd", b"a".to_vec(), 0o644).unwrap();
        // The same content again is fine.
        layer.file("/etc/passwd", b"a".to_vec(), 0o644).unwrap();
        let err = layer.file("/etc/passwd", b"b".to_vec(), 0o644).unwrap_err();
        assert!(matches!(err, Error::ConflictingEntry { .. }), "{err}");
        // A file cannot become the parent of another entry.
        let err = layer
            .file("/etc/passwd/x", b"b".to_vec(), 0o644)
            .unwrap_err();
        assert!(matches!(err, Error::ConflictingEntry { .. }), "{err}");
        // A directory made implicitly can get its real mode and owner.
        layer
            .file("/home/nonroot/.profile", Vec::new(), 0o644)
            .unwrap();
        layer.dir("/home/nonroot", 0o700, 65532, 65532).unwrap();
    }
}
