//! One plugin invocation: environment + stdin in, stdout + exit status out.
//!
//! Kept free of process globals (env, stdio, exit) so tests and the fuzz target drive it
//! directly.

use std::collections::HashMap;

use serde_json::json;

use crate::protocol::{Attachment, GcRequest, Request, Response, codes};

use super::client::{Transport, TransportError};
use super::config::{NetConf, peek_version};
use super::env::{CniEnv, Command};
use super::error::CniError;
use super::result;
use super::version::{SpecVersion, supported_versions};

/// What the binary prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub stdout: String,
    pub exit_code: i32,
}

impl Output {
    fn success(stdout: String) -> Self {
        Self {
            stdout,
            exit_code: 0,
        }
    }

    fn error(error: &CniError, version: SpecVersion) -> Self {
        Self {
            stdout: error.to_json(version),
            exit_code: 1,
        }
    }
}

/// Runs one CNI command.
pub fn run(vars: &HashMap<String, String>, stdin: &[u8], transport: &dyn Transport) -> Output {
    let env = match CniEnv::parse(vars) {
        Ok(env) => env,
        Err(e) => return Output::error(&e, peek_version(stdin).unwrap_or(SpecVersion::LATEST)),
    };
    if env.command == Command::Version {
        // VERSION must answer whatever the runtime sends (often just `{"cniVersion":..}`).
        let out = json!({
            "cniVersion": SpecVersion::LATEST.as_str(),
            "supportedVersions": supported_versions(),
        });
        return Output::success(out.to_string());
    }
    let conf = match NetConf::parse(stdin) {
        Ok(conf) => conf,
        Err(e) => return Output::error(&e, peek_version(stdin).unwrap_or(SpecVersion::LATEST)),
    };
    match execute(&env, &conf, transport) {
        Ok(stdout) => Output::success(stdout),
        Err(e) => Output::error(&e, conf.version),
    }
}

fn execute(env: &CniEnv, conf: &NetConf, transport: &dyn Transport) -> Result<String, CniError> {
    let command = env.command;
    let needed = match command {
        Command::Check => SpecVersion::V0_4_0,
        Command::Gc | Command::Status => SpecVersion::V1_1_0,
        _ => SpecVersion::V0_3_0,
    };
    if conf.version < needed {
        return Err(CniError::incompatible_version(format!(
            "{} needs cniVersion {needed} or later, the config says {}",
            command.as_str(),
            conf.version
        )));
    }
    let attachment = || -> Result<Attachment, CniError> {
        let c = env
            .container
            .as_ref()
            .ok_or_else(|| CniError::invalid_env("container variables missing"))?;
        Ok(Attachment {
            network: conf.name.clone(),
            container_id: c.container_id.clone(),
            ifname: c.ifname.clone(),
            netns: c.netns.clone(),
            pod: c.pod.clone(),
            bandwidth: conf.bandwidth,
        })
    };
    let request = match command {
        Command::Add => Request::Add(attachment()?),
        Command::Del => Request::Del(attachment()?),
        Command::Check => {
            if conf.prev_result.is_none() {
                return Err(CniError::invalid_config(
                    "CHECK needs prevResult (the result of the ADD) in the network configuration",
                ));
            }
            Request::Check(attachment()?)
        }
        Command::Gc => Request::Gc(GcRequest {
            network: conf.name.clone(),
            valid: conf.valid_attachments.clone().ok_or_else(|| {
                // Without the list, GC would remove every pod's wiring.
                CniError::invalid_config(
                    "GC needs cni.dev/valid-attachments in the network configuration",
                )
            })?,
        }),
        Command::Status => Request::Status,
        Command::Version => unreachable!("VERSION is answered before the config is read"),
    };
    let response = transport
        .call(&conf.socket_path, conf.agent_timeout, &request)
        .map_err(|e| transport_error(command, e))?;
    match (command, response) {
        (_, Response::Failed(reply)) => Err(reply.into()),
        (Command::Add, Response::Added(wired)) => {
            Ok(result::render(conf.version, &wired, &conf.dns).to_string())
        }
        (Command::Add, Response::Done) => Err(CniError::new(
            codes::IO_FAILURE,
            "eni-agent answered ADD without a result",
        )),
        (_, Response::Done) => Ok(String::new()),
        (_, Response::Added(_)) => Err(CniError::new(
            codes::IO_FAILURE,
            format!("eni-agent answered {} with an ADD result", command.as_str()),
        )),
    }
}

fn transport_error(command: Command, error: TransportError) -> CniError {
    let down = matches!(
        error,
        TransportError::Unreachable { .. } | TransportError::Timeout { .. }
    );
    let code = match (command, down) {
        (Command::Status, _) => codes::NOT_AVAILABLE,
        (_, true) => codes::TRY_AGAIN_LATER,
        (_, false) => codes::IO_FAILURE,
    };
    let msg = if down {
        format!(
            "eni-agent is down or not answering, cannot {} the pod network; the runtime should retry once the eni-agent pod on this node is ready",
            command.as_str()
        )
    } else {
        format!("talking to eni-agent failed during {}", command.as_str())
    };
    CniError::new(code, msg).with_details(error.to_string())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::protocol::{AttachmentResult, Interface, IpConfig};

    /// Records requests and answers with a fixed response or transport error.
    struct Fake {
        answer: fn() -> Result<Response, TransportError>,
        seen: RefCell<Vec<Request>>,
    }

    impl Transport for Fake {
        fn call(
            &self,
            _: &Path,
            _: Duration,
            request: &Request,
        ) -> Result<Response, TransportError> {
            self.seen.borrow_mut().push(request.clone());
            (self.answer)()
        }
    }

    fn fake(answer: fn() -> Result<Response, TransportError>) -> Fake {
        Fake {
            answer,
            seen: RefCell::new(Vec::new()),
        }
    }

    fn env(command: &str) -> HashMap<String, String> {
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    const CONF: &[u8] = br#"{"cniVersion":"1.1.0","name":"eni","type":"eni-cni","dns":{"nameservers":["10.96.0.10"]}}"#;

    fn added() -> Result<Response, TransportError> {
        Ok(Response::Added(AttachmentResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: None,
                sandbox: Some("/var/run/netns/p".into()),
            }],
            ips: vec![IpConfig {
                address: "10.0.0.9/32".into(),
                gateway: None,
                interface: Some(0),
            }],
            routes: vec![],
        }))
    }

    fn down() -> Result<Response, TransportError> {
        Err(TransportError::Unreachable {
            path: PathBuf::from("/run/x.sock"),
            source: io::Error::from(io::ErrorKind::NotFound),
        })
    }

    #[test]
    fn add_forwards_the_pod_and_prints_the_result() {
        let t = fake(added);
        let out = run(&env("ADD"), CONF, &t);
        assert_eq!(out.exit_code, 0, "{}", out.stdout);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["ips"][0]["address"], "10.0.0.9/32");
        assert_eq!(v["dns"]["nameservers"][0], "10.96.0.10");
        let Request::Add(a) = &t.seen.borrow()[0] else {
            panic!("not an ADD")
        };
        assert_eq!(a.pod.as_ref().unwrap().uid.as_deref(), Some("u"));
        assert_eq!(a.network, "eni");
    }

    #[test]
    fn agent_down_is_try_again_later_and_not_available_for_status() {
        let out = run(&env("ADD"), CONF, &fake(down));
        assert_eq!(out.exit_code, 1);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["code"], 11);
        assert!(v["msg"].as_str().unwrap().contains("eni-agent is down"));
        let out = run(&env("STATUS"), CONF, &fake(down));
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["code"], 50);
    }

    #[test]
    fn version_needs_no_agent_nor_valid_config() {
        let t = fake(down);
        let out = run(&env("VERSION"), b"", &t);
        assert_eq!(out.exit_code, 0);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
        assert!(t.seen.borrow().is_empty());
    }

    #[test]
    fn check_without_prev_result_and_old_versions_are_refused() {
        let t = fake(|| Ok(Response::Done));
        let out = run(&env("CHECK"), CONF, &t);
        assert!(out.stdout.contains("\"code\":7"), "{}", out.stdout);
        let out = run(
            &env("GC"),
            br#"{"cniVersion":"1.0.0","name":"eni","type":"eni-cni","cni.dev/valid-attachments":[]}"#,
            &t,
        );
        assert!(out.stdout.contains("\"code\":1"), "{}", out.stdout);
        assert!(t.seen.borrow().is_empty());
    }

    #[test]
    fn gc_and_del_print_nothing_on_success() {
        let t = fake(|| Ok(Response::Done));
        let out = run(
            &env("GC"),
            br#"{"cniVersion":"1.1.0","name":"eni","type":"eni-cni","cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
            &t,
        );
        assert_eq!(out, Output::success(String::new()));
        let out = run(&env("DEL"), CONF, &t);
        assert_eq!(out, Output::success(String::new()));
    }

    #[test]
    fn agent_errors_pass_through_with_their_code() {
        let t = fake(|| Ok(Response::failed(101, "mode needs ipvlan", "")));
        let out = run(&env("ADD"), CONF, &t);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["code"], 101);
        assert_eq!(v["cniVersion"], "1.1.0");
    }
}
