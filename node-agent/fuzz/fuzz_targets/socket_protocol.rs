//! The agent's and the plugin's decoding of socket messages.
#![no_main]

use eni_node_agent::protocol::{decode_request, decode_response, encode, RequestMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode_request(data) {
        // What decodes must re-encode to something that decodes the same.
        let again = encode(&RequestMessage::new(request.clone()));
        assert_eq!(decode_request(&again), Ok(request));
    }
    let _ = decode_response(data);
});
