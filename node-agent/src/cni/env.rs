//! The `CNI_*` environment of one plugin invocation.

use std::collections::HashMap;

use crate::protocol::PodRef;

use super::error::CniError;

/// The operation the runtime asks for (`CNI_COMMAND`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    fn parse(text: &str) -> Option<Command> {
        Some(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }
}

/// What an ADD, DEL or CHECK is about.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerEnv {
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<String>,
    pub pod: Option<PodRef>,
}

/// The parsed environment.
#[derive(Clone, Debug, PartialEq)]
pub struct CniEnv {
    pub command: Command,
    /// Present for ADD, DEL and CHECK.
    pub container: Option<ContainerEnv>,
}

impl CniEnv {
    /// Reads the variables the spec defines for `CNI_COMMAND` from `vars`.
    pub fn parse(vars: &HashMap<String, String>) -> Result<CniEnv, CniError> {
        let get = |name: &str| vars.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let command_text = get("CNI_COMMAND")
            .ok_or_else(|| CniError::invalid_env("CNI_COMMAND is not set; this binary is a CNI plugin run by the container runtime (or `eni-cni install` to install it)"))?;
        let command = Command::parse(command_text).ok_or_else(|| {
            CniError::invalid_env(format!(
                "CNI_COMMAND={command_text:?} is not one of ADD, DEL, CHECK, VERSION, GC, STATUS"
            ))
        })?;
        let container = match command {
            Command::Add | Command::Del | Command::Check => {
                let require = |name: &str| {
                    get(name).ok_or_else(|| {
                        CniError::invalid_env(format!(
                            "{name} is required for {} but is not set",
                            command.as_str()
                        ))
                    })
                };
                let container_id = require("CNI_CONTAINERID")?;
                validate_container_id(container_id)?;
                let ifname = require("CNI_IFNAME")?;
                validate_ifname(ifname)?;
                // The netns may already be gone on DEL, so only ADD and CHECK need it.
                let netns = match command {
                    Command::Del => get("CNI_NETNS"),
                    _ => Some(require("CNI_NETNS")?),
                };
                let args = parse_args(get("CNI_ARGS").unwrap_or(""))?;
                let pod = pod_from_args(&args, command)?;
                Some(ContainerEnv {
                    container_id: container_id.to_string(),
                    ifname: ifname.to_string(),
                    netns: netns.map(str::to_string),
                    pod,
                })
            }
            Command::Version | Command::Gc | Command::Status => None,
        };
        Ok(CniEnv { command, container })
    }
}

/// SPEC.md: must start with an alphanumeric character, followed by alphanumerics, `_`,
/// `.` or `-`. We rely on this: the id names a file in the agent's state dir.
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && id.len() <= 256 {
        Ok(())
    } else {
        Err(CniError::invalid_env(format!(
            "CNI_CONTAINERID={id:?} is not a valid container id (alphanumeric first, then alphanumerics, '_', '.', '-'; at most 256)"
        )))
    }
}

/// SPEC.md: a Linux interface name: not empty, not `.`/`..`, under 16 bytes, no `/`,
/// `:` or whitespace.
fn validate_ifname(name: &str) -> Result<(), CniError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() < 16
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CniError::invalid_env(format!(
            "CNI_IFNAME={name:?} is not a valid interface name (1-15 bytes, no '/', ':' or spaces)"
        )))
    }
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
fn parse_args(text: &str) -> Result<HashMap<&str, &str>, CniError> {
    let mut args = HashMap::new();
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            CniError::invalid_env(format!("CNI_ARGS entry {pair:?} is not KEY=VALUE"))
        })?;
        args.insert(key, value);
    }
    Ok(args)
}

fn pod_from_args(args: &HashMap<&str, &str>, command: Command) -> Result<Option<PodRef>, CniError> {
    let namespace = args.get("K8S_POD_NAMESPACE").filter(|v| !v.is_empty());
    let name = args.get("K8S_POD_NAME").filter(|v| !v.is_empty());
    let uid = args.get("K8S_POD_UID").filter(|v| !v.is_empty());
    match (namespace, name) {
        (Some(namespace), Some(name)) => Ok(Some(PodRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: uid.map(|u| u.to_string()),
        })),
        // ADD must find the pod's PodNetwork; DEL and CHECK can go by container id.
        _ if command == Command::Add => Err(CniError::invalid_env(
            "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME: eni-cni wires Kubernetes pods only",
        )),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codes;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1234";

    #[test]
    fn add_reads_container_and_pod() {
        let env = CniEnv::parse(&vars(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/var/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", ARGS),
            ("CNI_PATH", "/opt/cni/bin"),
        ]))
        .unwrap();
        assert_eq!(env.command, Command::Add);
        let c = env.container.unwrap();
        assert_eq!(c.container_id, "abc");
        assert_eq!(c.netns.as_deref(), Some("/var/run/netns/p"));
        let pod = c.pod.unwrap();
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("default", "web-0")
        );
        assert_eq!(pod.uid.as_deref(), Some("1234"));
    }

    #[test]
    fn del_needs_no_netns_nor_pod() {
        let env = CniEnv::parse(&vars(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap();
        let c = env.container.unwrap();
        assert_eq!(c.netns, None);
        assert_eq!(c.pod, None);
    }

    #[test]
    fn missing_or_bad_variables_are_code_4() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![("CNI_COMMAND", "FROB")],
            vec![("CNI_COMMAND", "ADD")],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", ARGS),
            ],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/x"),
            ],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "../etc"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", "/x"),
                ("CNI_ARGS", ARGS),
            ],
            vec![
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "a-very-long-interface"),
                ("CNI_NETNS", "/x"),
                ("CNI_ARGS", ARGS),
            ],
            vec![
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "abc"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "novalue"),
            ],
        ];
        for case in cases {
            let err = CniEnv::parse(&vars(&case)).unwrap_err();
            assert_eq!(err.code, codes::INVALID_ENVIRONMENT, "{case:?}: {err}");
        }
    }

    #[test]
    fn version_gc_status_need_only_the_command() {
        for cmd in ["VERSION", "GC", "STATUS"] {
            let env = CniEnv::parse(&vars(&[("CNI_COMMAND", cmd)])).unwrap();
            assert_eq!(env.container, None);
        }
    }
}
