//! The plugin's parsing of one invocation: the first input line holds `KEY=VALUE`
//! environment entries separated by NUL, the rest is stdin. Every outcome must be
//! success or a spec error object with a code.
#![no_main]

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use eni_node_agent::cni::client::{Transport, TransportError};
use eni_node_agent::protocol::{AttachmentResult, Request, Response};
use libfuzzer_sys::fuzz_target;

struct Accepting;

impl Transport for Accepting {
    fn call(&self, _: &Path, _: Duration, request: &Request) -> Result<Response, TransportError> {
        Ok(match request {
            Request::Add(_) => Response::Added(AttachmentResult::default()),
            _ => Response::Done,
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let (env_part, stdin) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let vars: HashMap<String, String> = env_part
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let text = std::str::from_utf8(entry).ok()?;
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    let out = eni_node_agent::cni::run(&vars, stdin, &Accepting);
    if out.exit_code != 0 {
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("error is JSON");
        assert!(v["code"].as_u64().is_some_and(|c| c > 0));
    }
});
