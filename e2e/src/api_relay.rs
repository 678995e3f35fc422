//! A TCP relay in front of the API server that a test can cut, as a network partition
//! would cut one replica off: while cut, bytes on open connections are held (nothing
//! arrives either way, nothing is refused) and new connections wait before reaching the
//! server. TLS passes through untouched (the server's certificate names 127.0.0.1).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading kubeconfig {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("kubeconfig {0} names no https server")]
    NoServer(PathBuf),
    #[error("relay: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Relay {
    cut: watch::Sender<bool>,
    accept: JoinHandle<()>,
    /// The kubeconfig that reaches the API server through the relay.
    pub kubeconfig: PathBuf,
}

impl Relay {
    /// A relay to the server of `kubeconfig`, and a copy of it (beside it, `name`)
    /// that goes through the relay.
    pub async fn for_kubeconfig(kubeconfig: &Path, name: &str) -> Result<Relay, RelayError> {
        let text = std::fs::read_to_string(kubeconfig)
            .map_err(|e| RelayError::Read(kubeconfig.to_path_buf(), e))?;
        let upstream: SocketAddr = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| RelayError::NoServer(kubeconfig.to_path_buf()))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let through = kubeconfig.with_file_name(name);
        std::fs::write(
            &through,
            text.replace(
                &format!("server: https://{upstream}"),
                &format!("server: https://{local}"),
            ),
        )?;
        let (cut, passing) = watch::channel(false);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, passing.clone()));
            }
        });
        Ok(Relay {
            cut,
            accept,
            kubeconfig: through,
        })
    }

    /// From now on nothing passes, until [`Relay::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, cut: watch::Receiver<bool>) {
    let mut wait = cut.clone();
    if wait.wait_for(|c| !c).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = pass(cr, sw, cut.clone()) => {}
        _ = pass(sr, cw, cut) => {}
    }
}

/// Copies `from` to `to`, holding each chunk while the relay is cut.
async fn pass(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut cut: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        if cut.wait_for(|c| !c).await.is_err() {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
    }
}
