//! The plugin's side of the agent socket: blocking std I/O, no async runtime, so the
//! binary starts fast and stays small.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::protocol::{self, MAX_MESSAGE_BYTES, ProtocolError, Request, RequestMessage, Response};

/// Why the agent could not be asked.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error("eni-agent is not running or not reachable at {path}: {source}", path = path.display())]
    Unreachable { path: PathBuf, source: io::Error },
    #[error("eni-agent at {path} did not answer within {timeout:?}", path = path.display())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("lost the connection to eni-agent: {0}")]
    Io(#[source] io::Error),
    #[error("eni-agent sent an answer this plugin cannot read: {0}")]
    Protocol(#[from] ProtocolError),
}

/// Sends one request to the agent and waits for its answer.
pub trait Transport {
    fn call(
        &self,
        socket: &Path,
        timeout: Duration,
        request: &Request,
    ) -> Result<Response, TransportError>;
}

/// The real transport: a unix stream socket.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnixTransport;

impl Transport for UnixTransport {
    fn call(
        &self,
        socket: &Path,
        timeout: Duration,
        request: &Request,
    ) -> Result<Response, TransportError> {
        let stream = UnixStream::connect(socket).map_err(|source| TransportError::Unreachable {
            path: socket.to_path_buf(),
            source,
        })?;
        let timed_out = |e: io::Error| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::Timeout {
                path: socket.to_path_buf(),
                timeout,
            },
            _ => TransportError::Io(e),
        };
        stream
            .set_read_timeout(Some(timeout))
            .map_err(TransportError::Io)?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(TransportError::Io)?;
        (&stream)
            .write_all(&protocol::encode(&RequestMessage::new(request.clone())))
            .map_err(timed_out)?;
        let mut line = Vec::new();
        BufReader::new(&stream)
            .take(MAX_MESSAGE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(timed_out)?;
        if line.last() != Some(&b'\n') {
            return Err(if line.len() > MAX_MESSAGE_BYTES {
                ProtocolError::TooLarge
            } else {
                ProtocolError::Truncated
            }
            .into());
        }
        Ok(protocol::decode_response(&line)?)
    }
}
