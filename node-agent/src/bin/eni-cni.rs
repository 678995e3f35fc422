//! `eni-cni`: the CNI plugin binary.
//!
//! Run by the container runtime with `CNI_*` variables and the network config on stdin;
//! forwards the request to eni-agent. `eni-cni install ...` installs the binary and the
//! conflist into the host's CNI directories.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use eni_node_agent::cni::client::UnixTransport;
use eni_node_agent::cni::install::{BandwidthBy, InstallOptions, install};
use eni_node_agent::cni::version::SpecVersion;
use eni_node_agent::cni::{self, CniError};
use eni_node_agent::protocol::codes;
use tracing::{error, info};

/// Install eni-cni into the host's CNI directories.
#[derive(Parser, Debug)]
#[command(name = "eni-cni install")]
struct InstallArgs {
    /// Directory the runtime loads CNI plugins from.
    #[arg(long, default_value = "/opt/cni/bin")]
    bin_dir: PathBuf,
    /// Directory the runtime reads network configs from.
    #[arg(long, default_value = "/etc/cni/net.d")]
    conf_dir: PathBuf,
    /// File name of the conflist (runtimes pick the first in lexical order).
    #[arg(long, default_value = "10-eni.conflist")]
    conflist_name: String,
    /// Network name in the conflist.
    #[arg(long, default_value = "eni")]
    network_name: String,
    /// Agent socket (default: the plugin's built-in /run/eni-operator/agent.sock).
    #[arg(long)]
    socket_path: Option<PathBuf>,
    /// How long the plugin waits for the agent, in seconds.
    #[arg(long)]
    agent_timeout_seconds: Option<f64>,
    /// Chain the reference portmap plugin (hostPort).
    #[arg(long)]
    portmap: bool,
    /// Who enforces the pods' bandwidth annotations: `agent` (eni-cni takes the
    /// capability, the agent shapes inside the pod, every mode), `chained-plugin` (the
    /// reference plugin: SharedIP veth pods only) or `none`.
    #[arg(long, value_enum, default_value_t = BandwidthBy::Agent)]
    bandwidth: BandwidthBy,
    /// Directory of the chained plugins shipped with eni-cni: a chained plugin missing
    /// from --bin-dir is copied from here.
    #[arg(long)]
    chained_plugins_dir: Option<PathBuf>,
    /// Replace the host's chained plugins with the shipped ones (default: keep them).
    #[arg(long, requires = "chained_plugins_dir")]
    overwrite_chained: bool,
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let _program = args.next();
    if args.next().is_some_and(|a| a == "install") {
        return run_install();
    }
    run_plugin()
}

fn run_plugin() -> ExitCode {
    let vars: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CNI_"))
        .collect();
    let mut stdin = Vec::new();
    let output = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => cni::run(&vars, &stdin, &UnixTransport),
        Err(e) => cni::Output {
            stdout: CniError::new(codes::IO_FAILURE, format!("reading stdin failed: {e}"))
                .to_json(SpecVersion::LATEST),
            exit_code: 1,
        },
    };
    let mut stdout = std::io::stdout().lock();
    // If stdout is gone the runtime has stopped listening; nothing left to tell it.
    let _ = stdout.write_all(output.stdout.as_bytes());
    let _ = stdout.flush();
    ExitCode::from(u8::try_from(output.exit_code).unwrap_or(1))
}

fn run_install() -> ExitCode {
    // The plugin path stays silent on stderr; the installer reports what it did.
    // Colours only on a terminal: the init container's log is read with kubectl logs.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let args = InstallArgs::parse_from(
        std::iter::once(std::ffi::OsString::from("eni-cni install"))
            .chain(std::env::args_os().skip(2)),
    );
    let source = match std::env::current_exe() {
        Ok(path) => path,
        Err(e) => {
            error!(error = %e, "eni-cni install: cannot locate the running binary");
            return ExitCode::FAILURE;
        }
    };
    let options = InstallOptions {
        source,
        bin_dir: args.bin_dir,
        conf_dir: args.conf_dir,
        conflist_name: args.conflist_name,
        network_name: args.network_name,
        socket_path: args.socket_path,
        agent_timeout_seconds: args.agent_timeout_seconds,
        portmap: args.portmap,
        bandwidth: args.bandwidth,
        chained_plugins_dir: args.chained_plugins_dir,
        overwrite_chained: args.overwrite_chained,
    };
    match install(&options) {
        Ok(installed) => {
            let chained: Vec<&str> = installed.chained.iter().map(|c| c.name).collect();
            info!(
                binary = %installed.binary.display(),
                conflist = %installed.conflist.display(),
                cni_version = %installed.cni_version,
                chained = ?chained,
                "installed"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "eni-cni install failed");
            ExitCode::FAILURE
        }
    }
}
