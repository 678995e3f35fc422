//! `eni-cni install`: puts the plugin binary and the CNI conflist into the host's CNI
//! directories (the agent DaemonSet's init container runs it).
//!
//! Both files are written to a temporary name in the target directory and renamed, so a
//! runtime reading the directory never sees a half-written binary or config.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{Value, json};
use thiserror::Error;

use super::version::SpecVersion;

/// Name of the installed binary; the conflist's `type` refers to it.
pub const PLUGIN_NAME: &str = "eni-cni";

#[derive(Debug, Error)]
pub enum InstallError {
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("chained plugin {plugin} was requested but cannot be run from {path}: {reason}", path = path.display())]
    ChainedPlugin {
        plugin: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("no CNI version is supported by eni-cni and all chained plugins ({0})")]
    NoCommonVersion(String),
}

/// What to install, from the command line.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The binary to copy (normally the running executable).
    pub source: PathBuf,
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub conflist_name: String,
    pub network_name: String,
    pub socket_path: Option<PathBuf>,
    pub agent_timeout_seconds: Option<f64>,
    /// Chain the reference `portmap` plugin (hostPort support).
    pub portmap: bool,
    /// Chain the reference `bandwidth` plugin (pod bandwidth annotations).
    pub bandwidth: bool,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    pub binary: PathBuf,
    pub conflist: PathBuf,
    pub cni_version: SpecVersion,
}

pub fn install(options: &InstallOptions) -> Result<Installed, InstallError> {
    let chained = chained_plugins(options);
    let version = negotiate_version(&options.bin_dir, &chained)?;
    let binary = options.bin_dir.join(PLUGIN_NAME);
    let bytes = fs::read(&options.source).map_err(|source| InstallError::Io {
        action: "reading",
        path: options.source.clone(),
        source,
    })?;
    write_atomically(&binary, &bytes, 0o755)?;
    let conflist = options.conf_dir.join(&options.conflist_name);
    let text = serde_json::to_string_pretty(&conflist_json(options, version))
        .unwrap_or_else(|e| unreachable!("a JSON value always serialises: {e}"));
    write_atomically(&conflist, text.as_bytes(), 0o644)?;
    Ok(Installed {
        binary,
        conflist,
        cni_version: version,
    })
}

fn chained_plugins(options: &InstallOptions) -> Vec<&'static str> {
    let mut plugins = Vec::new();
    if options.portmap {
        plugins.push("portmap");
    }
    if options.bandwidth {
        plugins.push("bandwidth");
    }
    plugins
}

/// The conflist: eni-cni first, then the optional chained plugins.
pub fn conflist_json(options: &InstallOptions, version: SpecVersion) -> Value {
    let mut eni = json!({ "type": PLUGIN_NAME });
    if let Some(path) = &options.socket_path {
        eni["socketPath"] = json!(path);
    }
    if let Some(seconds) = options.agent_timeout_seconds {
        eni["agentTimeoutSeconds"] = json!(seconds);
    }
    let mut plugins = vec![eni];
    if options.portmap {
        plugins.push(json!({ "type": "portmap", "capabilities": { "portMappings": true } }));
    }
    if options.bandwidth {
        plugins.push(json!({ "type": "bandwidth", "capabilities": { "bandwidth": true } }));
    }
    json!({
        "cniVersion": version.as_str(),
        "name": options.network_name,
        "plugins": plugins,
    })
}

/// The newest spec version every plugin of the chain speaks: older reference plugins
/// (before v1.5) stop at 1.0.0, and a conflist they cannot parse breaks every pod.
fn negotiate_version(
    bin_dir: &Path,
    chained: &[&'static str],
) -> Result<SpecVersion, InstallError> {
    let mut candidates: Vec<SpecVersion> = SpecVersion::ALL.to_vec();
    for plugin in chained {
        let path = bin_dir.join(plugin);
        let supported = plugin_versions(&path).map_err(|reason| InstallError::ChainedPlugin {
            plugin,
            path: path.clone(),
            reason,
        })?;
        candidates.retain(|v| supported.iter().any(|s| s == v.as_str()));
    }
    candidates
        .into_iter()
        .max()
        .ok_or_else(|| InstallError::NoCommonVersion(chained.join(", ")))
}

/// Asks a plugin which spec versions it supports (the CNI VERSION command).
fn plugin_versions(path: &Path) -> Result<Vec<String>, String> {
    let mut child = Process::new(path)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that ignores stdin may close it early; that is not an error.
        let _ = stdin.write_all(br#"{"cniVersion":"1.0.0"}"#);
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("VERSION exited with {}", output.status));
    }
    let v: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("VERSION output is not JSON: {e}"))?;
    let list = v["supportedVersions"]
        .as_array()
        .ok_or("VERSION output lacks supportedVersions")?;
    Ok(list
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect())
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Io {
            action,
            path,
            source,
        }
    };
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
        file.write_all(bytes).map_err(io_err("writing", &tmp))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err("setting permissions of", &tmp))?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("renaming into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path) -> InstallOptions {
        InstallOptions {
            source: dir.join("src-bin"),
            bin_dir: dir.join("bin"),
            conf_dir: dir.join("net.d"),
            conflist_name: "10-eni.conflist".into(),
            network_name: "eni".into(),
            socket_path: Some("/run/x.sock".into()),
            agent_timeout_seconds: None,
            portmap: false,
            bandwidth: false,
        }
    }

    #[test]
    fn installs_binary_and_conflist_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("src-bin"), b"\x7fELF fake").unwrap();
        let o = options(dir.path());
        let installed = install(&o).unwrap();
        assert_eq!(installed.cni_version, SpecVersion::LATEST);
        assert_eq!(fs::read(&installed.binary).unwrap(), b"\x7fELF fake");
        let mode = fs::metadata(&installed.binary)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let conf: Value = serde_json::from_slice(&fs::read(&installed.conflist).unwrap()).unwrap();
        assert_eq!(conf["plugins"][0]["type"], "eni-cni");
        assert_eq!(conf["plugins"][0]["socketPath"], "/run/x.sock");
        assert_eq!(conf["plugins"].as_array().unwrap().len(), 1);
        let leftovers = fs::read_dir(&o.bin_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn missing_chained_plugin_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("src-bin"), b"x").unwrap();
        let mut o = options(dir.path());
        o.portmap = true;
        let err = install(&o).unwrap_err();
        assert!(err.to_string().contains("portmap"), "{err}");
        assert!(!o.conf_dir.join("10-eni.conflist").exists());
    }
}
