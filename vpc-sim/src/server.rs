//! The HTTP server: EC2 Query API and ECS OpenAPI on `/` (a request with `x-acs-action`
//! is an ECS one), admin API under `/admin/`, on one loopback port. `spawn` runs it in-process for other crates' tests; the binary wraps it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::behaviour::SimConfig;
use crate::catalog::{Catalog, CatalogError};
use crate::cloud::Cloud;
use crate::dataplane_view::DataplaneView;
use crate::ec2::params::Params;
use crate::layout::{Layout, LayoutError};
use crate::sigv4::{Credentials, RequestParts};
use crate::sim::{Api, Sim};

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub layout: Layout,
    pub catalog: Catalog,
    pub behaviour: SimConfig,
    pub credentials: Vec<Credentials>,
    /// Recompute SigV4 signatures (else only the access key id is checked).
    pub verify_signatures: bool,
    /// Seed of ids, MACs, latency jitter and faults.
    pub seed: u64,
}

impl ServerConfig {
    /// Loopback on a free port, the built-in layout and catalog, EC2-like behaviour,
    /// the default credentials.
    pub fn new() -> Result<Self, ServerError> {
        Ok(Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            layout: Layout::builtin()?,
            catalog: Catalog::builtin()?,
            behaviour: SimConfig::default(),
            credentials: vec![Credentials::default()],
            verify_signatures: true,
            seed: 1,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub struct ServerHandle {
    pub addr: SocketAddr,
    /// EC2 endpoint, e.g. `http://127.0.0.1:40123`; the ECS endpoint is the same URL.
    pub ec2_url: String,
    /// Admin API base, e.g. `http://127.0.0.1:40123/admin`.
    pub admin_url: String,
    sim: Arc<Sim>,
    shutdown_tx: watch::Sender<bool>,
    serve: JoinHandle<Result<(), std::io::Error>>,
    transitions: JoinHandle<()>,
}

impl ServerHandle {
    pub fn sim(&self) -> &Arc<Sim> {
        &self.sim
    }

    /// Follows the dataplane view (for the materializer).
    pub fn views(&self) -> watch::Receiver<DataplaneView> {
        self.sim.views()
    }

    /// Stops accepting, finishes requests in flight, stops the background task.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown_tx.send(true);
        self.serve.await?.map_err(ServerError::Serve)?;
        self.transitions.await?;
        Ok(())
    }
}

pub async fn spawn(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let cloud = Cloud::new(config.catalog, &config.layout, config.seed);
    let sim = Sim::new(
        cloud,
        config.behaviour,
        config.credentials,
        config.verify_signatures,
        config.seed,
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let app = Router::new()
        .merge(crate::admin::router())
        .route("/", any(api_endpoint))
        .with_state(sim.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut serve_rx = shutdown_rx.clone();
    let serve = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = serve_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    let transitions = tokio::spawn(sim.clone().run_transitions(shutdown_rx));
    let ec2_url = format!("http://{addr}");
    info!(%addr, "vpc-sim listening");
    Ok(ServerHandle {
        addr,
        admin_url: format!("{ec2_url}/admin"),
        ec2_url,
        sim,
        shutdown_tx,
        serve,
        transitions,
    })
}

async fn api_endpoint(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::GET && method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let query = uri.query().unwrap_or_default();
    let params = Params::parse(query.as_bytes(), &body);
    let req = RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query,
        headers: &headers,
        body: &body,
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (api, action) = match header("x-acs-action") {
        Some(action) => {
            let version = match header("x-acs-version") {
                Some(crate::ecs::ECS_VERSION) => crate::ecs::ECS_VERSION,
                Some(crate::ecs::VPC_VERSION) => crate::ecs::VPC_VERSION,
                _ => "",
            };
            (Api::Ecs { version }, action.to_owned())
        }
        None => (
            Api::Ec2,
            params.get("Action").unwrap_or_default().to_owned(),
        ),
    };
    let answer = sim.handle(api, &req, &params, &action).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, api.content_type())],
        answer.body,
    )
        .into_response()
}
