//! The agent's state dir: one file per container with the request it was wired by, so
//! DEL and GC can undo a pod's wiring after its PodNetwork is gone and across agent
//! restarts.
//!
//! Files are replaced atomically (write, fsync, rename), so a crash leaves either the old
//! or the new record, never a torn one. Container ids are validated by the plugin
//! (alphanumerics, `_`, `.`, `-`, not starting with `.`), which makes them safe file names;
//! the agent checks again because the socket is an input too.
//!
//! Which containers each pod has records for is also kept in memory (read once at
//! start, then updated by every save and remove): ADD asks it for a pod's previous
//! sandboxes without reading every file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cni::install::{InstallError, write_atomically};
use crate::dataplane::PodRequest;
use crate::protocol::PodRef;

/// What the agent keeps per container: the dataplane request it wired, and the CNI
/// network and pod it was for (a new sandbox of the pod, and GC, are judged by those).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Record {
    #[serde(flatten)]
    pub request: PodRequest,
    pub network: String,
    pub pod: PodRef,
}

#[derive(Debug, Error)]
pub enum StateError {
    #[error("state dir {path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("writing state: {0}")]
    Write(#[from] InstallError),
    #[error("encoding the state of container {container_id}: {source}")]
    Encode {
        container_id: String,
        source: serde_json::Error,
    },
    #[error("state file {path} is corrupt: {source}", path = path.display())]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("container id {0:?} cannot name a state file")]
    BadContainerId(String),
}

/// A pod's attachment to a CNI network: its sandboxes are this one's containers.
type Attached = (String, String, String);

fn attached(record: &Record) -> Attached {
    (
        record.pod.namespace.clone(),
        record.pod.name.clone(),
        record.network.clone(),
    )
}

/// The directory of container records.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    /// Container ids with a record, per pod and network.
    index: Arc<Mutex<BTreeMap<Attached, BTreeSet<String>>>>,
}

impl StateDir {
    /// Opens (and creates) `<root>/containers` and indexes the records in it.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        let dir = root.join("containers");
        fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            path: dir.clone(),
            source,
        })?;
        let state = StateDir {
            dir,
            index: Arc::default(),
        };
        for record in state.list()?.into_iter().flatten() {
            state
                .indexed()
                .entry(attached(&record))
                .or_default()
                .insert(record.request.container_id);
        }
        Ok(state)
    }

    fn indexed(&self) -> MutexGuard<'_, BTreeMap<Attached, BTreeSet<String>>> {
        // Every change under the lock is one insert or remove: a poisoned lock is usable.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Containers of the pod `record` is for, in the same network, other than its own.
    pub fn other_sandboxes(&self, record: &Record) -> Vec<String> {
        self.indexed()
            .get(&attached(record))
            .map(|ids| {
                ids.iter()
                    .filter(|id| **id != record.request.container_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn path(&self, container_id: &str) -> Result<PathBuf, StateError> {
        let safe = container_id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && container_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && container_id.len() <= 256;
        if !safe {
            return Err(StateError::BadContainerId(container_id.to_string()));
        }
        Ok(self.dir.join(format!("{container_id}.json")))
    }

    pub fn save(&self, record: &Record) -> Result<(), StateError> {
        let container_id = &record.request.container_id;
        let path = self.path(container_id)?;
        // A netns path that is not UTF-8 has no JSON form.
        let bytes = serde_json::to_vec(record).map_err(|source| StateError::Encode {
            container_id: container_id.clone(),
            source,
        })?;
        write_atomically(&path, &bytes, 0o600)?;
        self.indexed()
            .entry(attached(record))
            .or_default()
            .insert(container_id.clone());
        Ok(())
    }

    pub fn load(&self, container_id: &str) -> Result<Option<Record>, StateError> {
        let path = self.path(container_id)?;
        read_record(&path)
    }

    /// Removes a record; a missing one is fine (DEL is idempotent).
    pub fn remove(&self, container_id: &str) -> Result<(), StateError> {
        let path = self.path(container_id)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(StateError::Io { path, source: e });
            }
            _ => {}
        }
        self.indexed().retain(|_, ids| {
            ids.remove(container_id);
            !ids.is_empty()
        });
        Ok(())
    }

    /// All records. Corrupt files are reported, not skipped silently.
    pub fn list(&self) -> Result<Vec<Result<Record, StateError>>, StateError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| StateError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StateError::Io {
                path: self.dir.clone(),
                source,
            })?;
            let path = entry.path();
            // Skip temporary files of an interrupted write.
            if path.extension().is_some_and(|e| e == "json")
                && !entry.file_name().to_string_lossy().starts_with('.')
            {
                match read_record(&path) {
                    Ok(Some(record)) => records.push(Ok(record)),
                    Ok(None) => {}
                    Err(e) => records.push(Err(e)),
                }
            }
        }
        Ok(records)
    }
}

fn read_record(path: &Path) -> Result<Option<Record>, StateError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Corrupt {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use eni_crds::{Allocation, Mac, Mode};

    fn record(id: &str) -> Record {
        Record {
            request: PodRequest {
                container_id: id.into(),
                netns_path: "/var/run/netns/x".into(),
                ifname: "eth0".into(),
                mode: Mode::SharedIp,
                allocation: Allocation {
                    address: Ipv4Addr::new(10, 0, 0, 5),
                    prefix_length: 32,
                    gateway: Ipv4Addr::new(10, 0, 0, 1),
                    subnet_cidr: "10.0.0.0/24".parse().unwrap(),
                    subnet_id: "subnet-1".into(),
                    eni_id: "eni-1".into(),
                    eni_mac: Mac::new([2, 0, 0, 0, 0, 1]),
                    device_index: 1,
                    route_table: Some(1001),
                    ..Allocation::default()
                },
                bandwidth: None,
            },
            network: "eni".into(),
            pod: PodRef {
                namespace: "ns".into(),
                name: "p".into(),
                uid: Some("u".into()),
            },
        }
    }

    #[test]
    fn save_load_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.save(&record("c1")).unwrap();
        state.save(&record("c2")).unwrap();
        assert_eq!(state.load("c1").unwrap(), Some(record("c1")));
        assert_eq!(state.load("nope").unwrap(), None);
        assert_eq!(state.list().unwrap().len(), 2);
        state.remove("c1").unwrap();
        state.remove("c1").unwrap();
        assert_eq!(state.load("c1").unwrap(), None);
        // A restarted agent sees what the previous one wrote.
        let reopened = StateDir::open(dir.path()).unwrap();
        assert_eq!(reopened.load("c2").unwrap(), Some(record("c2")));
    }

    #[test]
    fn other_sandboxes_of_a_pod_from_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.save(&record("old")).unwrap();
        let mut elsewhere = record("other-pod");
        elsewhere.pod.name = "q".into();
        state.save(&elsewhere).unwrap();
        let mut other_network = record("second-net");
        other_network.network = "other".into();
        state.save(&other_network).unwrap();
        assert_eq!(
            state.other_sandboxes(&record("new")),
            vec!["old".to_string()]
        );
        assert!(state.other_sandboxes(&record("old")).is_empty());
        // Built from the files at start, kept by saves and removes.
        let reopened = StateDir::open(dir.path()).unwrap();
        assert_eq!(
            reopened.other_sandboxes(&record("new")),
            vec!["old".to_string()]
        );
        reopened.remove("old").unwrap();
        assert!(reopened.other_sandboxes(&record("new")).is_empty());
        assert_eq!(reopened.other_sandboxes(&elsewhere), Vec::<String>::new());
    }

    /// Records written by earlier agents (the same JSON shape) stay readable.
    #[test]
    fn reads_records_of_earlier_agents() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let earlier = r#"{"containerID":"c1","network":"eni","pod":{"namespace":"ns","name":"p","uid":"u"},"netns":"/var/run/netns/x","ifname":"eth0","mode":"SharedIP","allocation":{"address":"10.0.0.5","prefixLength":32,"gateway":"10.0.0.1","subnetCIDR":"10.0.0.0/24","subnetID":"subnet-1","eniID":"eni-1","eniMAC":"02:00:00:00:00:01","deviceIndex":1,"routeTable":1001}}"#;
        fs::write(dir.path().join("containers/c1.json"), earlier).unwrap();
        assert_eq!(state.load("c1").unwrap(), Some(record("c1")));
    }

    #[test]
    fn hostile_ids_and_corrupt_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        for id in ["../x", "", ".hidden", "a/b"] {
            assert!(matches!(state.load(id), Err(StateError::BadContainerId(_))));
        }
        fs::write(dir.path().join("containers/bad.json"), b"{").unwrap();
        assert!(matches!(state.load("bad"), Err(StateError::Corrupt { .. })));
        assert!(state.list().unwrap()[0].is_err());
        let mut malformed = serde_json::to_value(record("mac")).unwrap();
        malformed["allocation"]["eniMAC"] = "02:00".into();
        fs::write(
            dir.path().join("containers/mac.json"),
            malformed.to_string(),
        )
        .unwrap();
        assert!(matches!(state.load("mac"), Err(StateError::Corrupt { .. })));
    }
}
