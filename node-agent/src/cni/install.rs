//! `eni-cni install`: puts the plugin binary, the chained reference plugins the host
//! lacks, and the CNI conflist into the host's CNI directories (the agent DaemonSet's
//! init container runs it).
//!
//! Every file is written to a temporary name in the target directory and renamed, so a
//! runtime reading the directory never sees a half-written binary or config.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{Value, json};
use thiserror::Error;
use tracing::info;

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
    #[error("chained plugin {plugin} is neither on the host ({host}) nor shipped ({shipped})", host = host.display(), shipped = describe_shipped(shipped.as_deref()))]
    ChainedPluginMissing {
        plugin: &'static str,
        host: PathBuf,
        shipped: Option<PathBuf>,
    },
    #[error("replacing the host's {plugin} was asked for, but the shipped one is missing ({path})", path = path.display())]
    ShippedPluginMissing { plugin: &'static str, path: PathBuf },
    #[error("no CNI version is supported by eni-cni and all chained plugins ({0})")]
    NoCommonVersion(String),
}

fn describe_shipped(path: Option<&Path>) -> String {
    path.map_or_else(
        || "no chained plugins directory given".to_string(),
        |p| format!("{} does not exist", p.display()),
    )
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
    /// Who enforces the pods' bandwidth annotations.
    pub bandwidth: BandwidthBy,
    /// Where the chained plugins shipped next to eni-cni are (the agent image's); a
    /// chained plugin the host lacks is copied from here.
    pub chained_plugins_dir: Option<PathBuf>,
    /// Replace the host's chained plugins with the shipped ones. Off by default: the
    /// host's copies may be newer, or other networks on the node may rely on them.
    pub overwrite_chained: bool,
}

/// Who enforces the pods' bandwidth annotations (the runtime's `bandwidth` capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BandwidthBy {
    /// eni-cni takes the capability and the agent shapes inside the pod's namespace:
    /// every mode, one bucket per direction over all of the pod's links.
    #[default]
    Agent,
    /// The reference `bandwidth` plugin, chained: it shapes the host end of a veth, so
    /// it can only limit SharedIP veth pods and fails ADD and CHECK of the others.
    ChainedPlugin,
    /// Nobody: the annotations are ignored.
    None,
}

/// What happened to one chained plugin in the host's bin directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainedAction {
    /// The host had none: the shipped one was copied in.
    Copied,
    /// The host had one and `overwrite_chained` replaced it with the shipped one.
    Replaced,
    /// The host's own copy is used as it is.
    KeptHost,
}

impl ChainedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainedAction::Copied => "copied the shipped plugin (the host had none)",
            ChainedAction::Replaced => "replaced the host's plugin with the shipped one",
            ChainedAction::KeptHost => "kept the host's plugin",
        }
    }
}

/// A chained plugin as installed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainedPlugin {
    pub name: &'static str,
    pub path: PathBuf,
    pub action: ChainedAction,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    pub binary: PathBuf,
    pub conflist: PathBuf,
    pub cni_version: SpecVersion,
    pub chained: Vec<ChainedPlugin>,
}

pub fn install(options: &InstallOptions) -> Result<Installed, InstallError> {
    let names = chained_plugins(options);
    // Placed before the version check: it asks the binaries the runtime will run.
    let chained = names
        .iter()
        .map(|name| place_chained(options, name))
        .collect::<Result<Vec<_>, _>>()?;
    let version = negotiate_version(&options.bin_dir, &names)?;
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
        chained,
    })
}

/// Makes `name` available in the host's bin directory: the host's copy wins unless
/// `overwrite_chained`; a missing one comes from `chained_plugins_dir`.
fn place_chained(
    options: &InstallOptions,
    name: &'static str,
) -> Result<ChainedPlugin, InstallError> {
    let path = options.bin_dir.join(name);
    // `is_file` follows symlinks: a dangling link counts as missing and is replaced.
    let on_host = path.is_file();
    let shipped = options.chained_plugins_dir.as_ref().map(|d| d.join(name));
    let action = match shipped {
        Some(source) if on_host && options.overwrite_chained => {
            if !source.is_file() {
                return Err(InstallError::ShippedPluginMissing {
                    plugin: name,
                    path: source,
                });
            }
            copy_plugin(&source, &path)?;
            ChainedAction::Replaced
        }
        _ if on_host => ChainedAction::KeptHost,
        Some(source) if source.is_file() => {
            copy_plugin(&source, &path)?;
            ChainedAction::Copied
        }
        shipped => {
            return Err(InstallError::ChainedPluginMissing {
                plugin: name,
                host: path,
                shipped,
            });
        }
    };
    info!(plugin = name, path = %path.display(), action = action.as_str(), "chained plugin");
    Ok(ChainedPlugin { name, path, action })
}

fn copy_plugin(source: &Path, target: &Path) -> Result<(), InstallError> {
    let bytes = fs::read(source).map_err(|e| InstallError::Io {
        action: "reading",
        path: source.to_path_buf(),
        source: e,
    })?;
    write_atomically(target, &bytes, 0o755)
}

fn chained_plugins(options: &InstallOptions) -> Vec<&'static str> {
    let mut plugins = Vec::new();
    if options.portmap {
        plugins.push("portmap");
    }
    if options.bandwidth == BandwidthBy::ChainedPlugin {
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
    if options.bandwidth == BandwidthBy::Agent {
        eni["capabilities"] = json!({ "bandwidth": true });
    }
    let mut plugins = vec![eni];
    if options.portmap {
        // masqAll: every hostPort connection is masqueraded to the node's address, so
        // the pod's answer goes back to the node, where conntrack reverses the DNAT. A
        // pod's own traffic leaves through its ENI (source rule or the ENI itself), which
        // would otherwise carry the answer past the node with the DNAT never reversed.
        // The pod sees the node, not the client, as the source (as a NodePort with
        // externalTrafficPolicy Cluster).
        plugins.push(json!({
            "type": "portmap",
            "capabilities": { "portMappings": true },
            "snat": true,
            "masqAll": true,
        }));
    }
    if options.bandwidth == BandwidthBy::ChainedPlugin {
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
    let mut child = spawn_version(path).map_err(|e| e.to_string())?;
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

/// Starts `path` for VERSION. A plugin just copied in can be briefly "busy" (ETXTBSY):
/// a process forked by another thread meanwhile holds the write descriptor until it
/// execs, so exec is retried a few times.
fn spawn_version(path: &Path) -> io::Result<std::process::Child> {
    let mut attempts = 0;
    loop {
        let result = Process::new(path)
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        match result {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && attempts < 10 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
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
            bandwidth: BandwidthBy::None,
            chained_plugins_dir: None,
            overwrite_chained: false,
        }
    }

    /// A stand-in reference plugin: answers VERSION with `versions`; `origin` tells
    /// copies apart.
    fn fake_plugin(path: &Path, origin: &str, versions: &[&str]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let list = versions
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        let script = format!(
            "#!/bin/sh\n# {origin}\necho '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[{list}]}}'\n"
        );
        fs::write(path, script).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn origin_of(path: &Path) -> String {
        let text = fs::read_to_string(path).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("# "))
            .unwrap_or_default()
            .to_string()
    }

    /// Options chaining both plugins, with a shipped directory holding both.
    fn chained_options(dir: &Path) -> InstallOptions {
        fs::write(dir.join("src-bin"), b"x").unwrap();
        let shipped = dir.join("shipped");
        fake_plugin(
            &shipped.join("portmap"),
            "shipped",
            &["0.4.0", "1.0.0", "1.1.0"],
        );
        fake_plugin(
            &shipped.join("bandwidth"),
            "shipped",
            &["0.4.0", "1.0.0", "1.1.0"],
        );
        InstallOptions {
            portmap: true,
            bandwidth: BandwidthBy::ChainedPlugin,
            chained_plugins_dir: Some(shipped),
            ..options(dir)
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

    #[test]
    fn copies_shipped_plugins_the_host_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let o = chained_options(dir.path());
        let installed = install(&o).unwrap();
        for name in ["portmap", "bandwidth"] {
            let path = o.bin_dir.join(name);
            assert_eq!(origin_of(&path), "shipped", "{name}");
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{name}");
        }
        let actions: Vec<_> = installed
            .chained
            .iter()
            .map(|c| (c.name, c.action))
            .collect();
        assert_eq!(
            actions,
            [
                ("portmap", ChainedAction::Copied),
                ("bandwidth", ChainedAction::Copied)
            ]
        );
        // The copies are what the version check ran: all three speak 1.1.0.
        assert_eq!(installed.cni_version, SpecVersion::V1_1_0);
    }

    #[test]
    fn keeps_the_hosts_plugins_unless_told_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = chained_options(dir.path());
        // The host's portmap is older: it stops at 1.0.0.
        fake_plugin(&o.bin_dir.join("portmap"), "host", &["0.4.0", "1.0.0"]);
        let installed = install(&o).unwrap();
        assert_eq!(origin_of(&o.bin_dir.join("portmap")), "host");
        assert_eq!(origin_of(&o.bin_dir.join("bandwidth")), "shipped");
        assert_eq!(installed.chained[0].action, ChainedAction::KeptHost);
        assert_eq!(installed.chained[1].action, ChainedAction::Copied);
        // The chain speaks what the host's portmap speaks.
        assert_eq!(installed.cni_version, SpecVersion::V1_0_0);

        o.overwrite_chained = true;
        let installed = install(&o).unwrap();
        assert_eq!(origin_of(&o.bin_dir.join("portmap")), "shipped");
        assert_eq!(installed.chained[0].action, ChainedAction::Replaced);
        assert_eq!(installed.chained[1].action, ChainedAction::Replaced);
        assert_eq!(installed.cni_version, SpecVersion::V1_1_0);
    }

    #[test]
    fn a_plugin_neither_on_the_host_nor_shipped_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let o = chained_options(dir.path());
        fs::remove_file(o.chained_plugins_dir.as_ref().unwrap().join("bandwidth")).unwrap();
        let err = install(&o).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                InstallError::ChainedPluginMissing {
                    plugin: "bandwidth",
                    ..
                }
            ),
            "{text}"
        );
        assert!(text.contains("shipped/bandwidth does not exist"), "{text}");
        assert!(!o.conf_dir.join("10-eni.conflist").exists());

        // Asked to replace the host's copy with a shipped one that is not there.
        let mut o = chained_options(dir.path());
        fake_plugin(&o.bin_dir.join("bandwidth"), "host", &["1.0.0"]);
        fs::remove_file(o.chained_plugins_dir.as_ref().unwrap().join("bandwidth")).unwrap();
        o.overwrite_chained = true;
        let err = install(&o).unwrap_err();
        assert!(
            matches!(
                err,
                InstallError::ShippedPluginMissing {
                    plugin: "bandwidth",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(origin_of(&o.bin_dir.join("bandwidth")), "host");
    }

    /// With the node's real reference plugins (Debian's containernetworking-plugins) as
    /// the shipped ones, as in the agent image.
    #[test]
    fn copies_real_reference_plugins() {
        let real = Path::new("/usr/lib/cni");
        if !real.join("portmap").is_file() || !real.join("bandwidth").is_file() {
            eprintln!("skipping: no reference CNI plugins in {}", real.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("src-bin"), b"x").unwrap();
        let o = InstallOptions {
            portmap: true,
            bandwidth: BandwidthBy::ChainedPlugin,
            chained_plugins_dir: Some(real.to_path_buf()),
            ..options(dir.path())
        };
        let installed = install(&o).unwrap();
        for name in ["portmap", "bandwidth"] {
            assert_eq!(
                fs::read(o.bin_dir.join(name)).unwrap(),
                fs::read(real.join(name)).unwrap()
            );
        }
        // Whatever they speak, the chosen version is one they answered with.
        let supported = plugin_versions(&o.bin_dir.join("portmap")).unwrap();
        assert!(
            supported
                .iter()
                .any(|v| v == installed.cni_version.as_str())
        );
    }

    #[test]
    fn conflist_chains_portmap_and_bandwidth_after_eni_cni() {
        let dir = tempfile::tempdir().unwrap();
        let o = chained_options(dir.path());
        let installed = install(&o).unwrap();
        let conf: Value = serde_json::from_slice(&fs::read(&installed.conflist).unwrap()).unwrap();
        assert_eq!(
            conf,
            json!({
                "cniVersion": "1.1.0",
                "name": "eni",
                "plugins": [
                    { "type": "eni-cni", "socketPath": "/run/x.sock" },
                    { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true, "masqAll": true },
                    { "type": "bandwidth", "capabilities": { "bandwidth": true } }
                ]
            })
        );
    }

    #[test]
    fn by_default_eni_cni_takes_the_bandwidth_capability_itself() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = chained_options(dir.path());
        o.bandwidth = BandwidthBy::Agent;
        let installed = install(&o).unwrap();
        let conf: Value = serde_json::from_slice(&fs::read(&installed.conflist).unwrap()).unwrap();
        assert_eq!(
            conf["plugins"],
            json!([
                { "type": "eni-cni", "socketPath": "/run/x.sock", "capabilities": { "bandwidth": true } },
                { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true, "masqAll": true },
            ])
        );
        // Only portmap was placed and asked for its versions.
        assert_eq!(
            installed.chained.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["portmap"]
        );
        assert_eq!(BandwidthBy::default(), BandwidthBy::Agent);
    }
}
