//! A bounded fuzz run in plain `cargo test`: arbitrary environments and stdin through the
//! plugin's parser, arbitrary bytes through the socket protocol. Nothing may panic, and
//! every failure must be a spec error object with a code. (Unbounded runs: node-agent/fuzz.)

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use eni_node_agent::cni::client::{Transport, TransportError};
use eni_node_agent::cni::run;
use eni_node_agent::protocol::{self, Request, Response, decode_request, decode_response};
use proptest::prelude::*;

/// An agent that accepts everything, so the fuzz reaches result rendering too.
struct Accepting;

impl Transport for Accepting {
    fn call(&self, _: &Path, _: Duration, request: &Request) -> Result<Response, TransportError> {
        Ok(match request {
            Request::Add(_) => Response::Added(protocol::AttachmentResult::default()),
            _ => Response::Done,
        })
    }
}

fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ADD".to_string()),
        Just("DEL".to_string()),
        Just("CHECK".to_string()),
        Just("VERSION".to_string()),
        Just("GC".to_string()),
        Just("STATUS".to_string()),
        "[A-Z]{0,6}",
    ]
}

/// JSON-ish stdin: mutations of a valid config plus raw noise.
fn stdin() -> impl Strategy<Value = Vec<u8>> {
    let version = prop_oneof![
        Just("1.1.0".to_string()),
        Just("1.0.0".to_string()),
        Just("0.4.0".to_string()),
        "[0-9.]{0,7}",
    ];
    let structured = (
        version,
        "[a-z-]{0,8}",
        proptest::option::of("[ -~]{0,20}"),
        proptest::option::of(-5.0f64..5.0),
        any::<bool>(),
    )
        .prop_map(|(v, name, socket, timeout, attachments)| {
            let mut c = serde_json::json!({"cniVersion": v, "name": name, "type": "eni-cni"});
            if let Some(s) = socket {
                c["socketPath"] = serde_json::json!(s);
            }
            if let Some(t) = timeout {
                c["agentTimeoutSeconds"] = serde_json::json!(t);
            }
            if attachments {
                c["cni.dev/valid-attachments"] =
                    serde_json::json!([{"containerID": "a", "ifname": "eth0"}]);
                c["prevResult"] = serde_json::json!({"cniVersion": v});
            }
            c.to_string().into_bytes()
        });
    prop_oneof![structured, proptest::collection::vec(any::<u8>(), 0..200)]
}

fn env() -> impl Strategy<Value = HashMap<String, String>> {
    (
        command(),
        proptest::option::of("[ -~]{0,20}"),
        proptest::option::of("[ -~]{0,20}"),
        proptest::option::of("[ -~]{0,20}"),
        proptest::option::of("([A-Z0-9_]{0,12}=[ -~&&[^;]]{0,8};?){0,5}"),
    )
        .prop_map(|(command, id, netns, ifname, args)| {
            let mut vars = HashMap::new();
            vars.insert("CNI_COMMAND".to_string(), command);
            for (key, value) in [
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", ifname),
                ("CNI_ARGS", args),
            ] {
                if let Some(v) = value {
                    vars.insert(key.to_string(), v);
                }
            }
            vars
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn plugin_never_panics_and_errors_carry_codes(vars in env(), input in stdin()) {
        let out = run(&vars, &input, &Accepting);
        if out.exit_code == 0 {
            prop_assert!(out.stdout.is_empty() || serde_json::from_str::<serde_json::Value>(&out.stdout).is_ok());
        } else {
            let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("error output is JSON");
            prop_assert!(v["code"].as_u64().is_some_and(|c| c > 0), "{}", out.stdout);
            prop_assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()));
            prop_assert!(v["cniVersion"].is_string());
        }
    }

    #[test]
    fn protocol_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_request(&bytes);
        let _ = decode_response(&bytes);
    }

    #[test]
    fn protocol_decoding_of_near_valid_messages(
        command in prop_oneof![Just("ADD"), Just("DEL"), Just("GC"), Just("STATUS"), Just("X")],
        version in 0u32..3,
        body in "[ -~]{0,40}",
    ) {
        let line = format!(r#"{{"protocol":{version},"command":"{command}",{body}}}"#);
        let _ = decode_request(line.as_bytes());
    }
}
