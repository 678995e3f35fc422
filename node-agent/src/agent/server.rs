//! The agent's unix socket: one request per connection (see `protocol`).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::protocol::{self, MAX_MESSAGE_BYTES, ProtocolError, Response, ResponseMessage, codes};

use super::handler::Agent;
use super::kube::StatusWriter;
use super::wiring::Wiring;

/// How long a client may take to send its request; the plugin sends it at once.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("preparing socket {path}: {source}", path = path.display())]
    Bind { path: PathBuf, source: io::Error },
}

/// Binds the socket: creates its directory, replaces a stale socket of a previous run,
/// and restricts it to root (the runtime runs the plugin as root).
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let err = |source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Serves requests until the task is dropped.
pub async fn serve<W: Wiring, S: StatusWriter>(listener: UnixListener, agent: Arc<Agent<W, S>>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let agent = agent.clone();
                tokio::spawn(async move {
                    if let Err(error) = connection(stream, &agent).await {
                        tracing::debug!(%error, "CNI connection ended with an error");
                    }
                });
            }
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(%error, "accepting a CNI connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection<W: Wiring, S: StatusWriter>(
    stream: UnixStream,
    agent: &Agent<W, S>,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_MESSAGE_BYTES as u64 + 1);
    let read = tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
    let response = match read {
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client sent no request",
            ));
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) if line.last() != Some(&b'\n') => rejection(if line.len() > MAX_MESSAGE_BYTES {
            ProtocolError::TooLarge
        } else {
            ProtocolError::Truncated
        }),
        Ok(Ok(_)) => match protocol::decode_request(&line) {
            Ok(request) => agent.handle(request).await,
            Err(e) => rejection(e),
        },
    };
    write
        .write_all(&protocol::encode(&ResponseMessage::new(response)))
        .await?;
    write.shutdown().await
}

fn rejection(error: ProtocolError) -> Response {
    let code = match error {
        ProtocolError::VersionMismatch { .. } => codes::INCOMPATIBLE_VERSION,
        _ => codes::DECODE_FAILURE,
    };
    let msg = match error {
        ProtocolError::VersionMismatch { .. } => {
            "eni-cni and eni-agent are of different releases; reinstall eni-cni from the running agent's image"
        }
        _ => "eni-agent could not read the request",
    };
    Response::failed(code, msg, error.to_string())
}
