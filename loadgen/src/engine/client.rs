//! A lean HTTP/1.1 client for the load: one hyper connection per virtual
//! user (closed loop) or per concurrent request slot (open loop), no
//! per-request pool locking on the closed-loop path. Prometheus and other
//! control traffic use reqwest instead.

use std::{net::SocketAddr, sync::Mutex, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{client::conn::http1::SendRequest, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::engine::request::{PlannedRequest, FAULT_DELAY_HEADER, FAULT_STATUS_HEADER};

/// Why a request got no HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportError {
    /// The TCP connection could not be established.
    Connect,
    /// No complete response within the request timeout.
    Timeout,
    /// The connection broke mid-request.
    Io,
}

impl TransportError {
    pub fn name(self) -> &'static str {
        match self {
            TransportError::Connect => "connect",
            TransportError::Timeout => "timeout",
            TransportError::Io => "io",
        }
    }
}

/// Where the load goes: a resolved `http://host:port` base URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub base: String,
    pub authority: String,
    pub addr: SocketAddr,
}

impl Target {
    /// Parses and resolves an `http://host:port` URL.
    pub async fn resolve(url: &str) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        let rest = base.strip_prefix("http://").ok_or_else(|| {
            anyhow::anyhow!("target {url:?} must start with http:// (https is not supported)")
        })?;
        if rest.contains('/') {
            anyhow::bail!("target {url:?} must not have a path; give only http://host:port");
        }
        let authority = rest.to_owned();
        let with_port = if authority.contains(':') {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|err| anyhow::anyhow!("cannot resolve target {url:?}: {err}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("target {url:?} resolves to no address"))?;
        Ok(Self {
            base,
            authority,
            addr,
        })
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(target: &Target) -> Result<Self, TransportError> {
        let stream = TcpStream::connect(target.addr)
            .await
            .map_err(|_| TransportError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| TransportError::Connect)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    pub fn is_usable(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request and reads the whole response; returns the status.
    pub async fn send(
        &mut self,
        target: &Target,
        planned: &PlannedRequest,
    ) -> Result<u16, TransportError> {
        let mut builder = Request::builder()
            .method(planned.method)
            .uri(planned.path.as_str())
            .header(hyper::header::HOST, target.authority.as_str());
        if planned.body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some((status, delay)) = planned.fault {
            builder = builder.header(FAULT_STATUS_HEADER, status);
            if !delay.is_zero() {
                builder = builder.header(FAULT_DELAY_HEADER, delay.as_millis() as u64);
            }
        }
        let request = builder
            .body(Full::new(planned.body.clone().unwrap_or_default()))
            .map_err(|_| TransportError::Io)?;
        self.sender.ready().await.map_err(|_| TransportError::Io)?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|_| TransportError::Io)?;
        let status = response.status().as_u16();
        response
            .into_body()
            .collect()
            .await
            .map_err(|_| TransportError::Io)?;
        Ok(status)
    }
}

/// Sends a request on `slot`'s connection (opening one if needed) within
/// `timeout`; a broken or timed-out connection is dropped.
pub async fn send_with(
    slot: &mut Option<Connection>,
    target: &Target,
    planned: &PlannedRequest,
    timeout: Duration,
) -> Result<u16, TransportError> {
    let attempt = async {
        if !slot.as_ref().is_some_and(Connection::is_usable) {
            *slot = Some(Connection::open(target).await?);
        }
        slot.as_mut()
            .expect("connection just opened")
            .send(target, planned)
            .await
    };
    let result = match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::Timeout),
    };
    if result.is_err() {
        *slot = None;
    }
    result
}

/// Idle connections shared by open-loop request tasks. The lock is held
/// only to push or pop, never across I/O.
#[derive(Default)]
pub struct ConnectionPool {
    idle: Mutex<Vec<Connection>>,
}

impl ConnectionPool {
    pub fn take(&self) -> Option<Connection> {
        self.idle.lock().expect("pool lock").pop()
    }

    pub fn give_back(&self, connection: Option<Connection>) {
        if let Some(connection) = connection.filter(Connection::is_usable) {
            self.idle.lock().expect("pool lock").push(connection);
        }
    }
}

/// Checks that the target answers `GET /healthz` quickly, so an unreachable
/// target is a clear error in seconds rather than a run full of failures.
pub async fn preflight(target: &Target) -> anyhow::Result<()> {
    let probe = async {
        let stream = TcpStream::connect(target.addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::get("/healthz")
            .header(hyper::header::HOST, target.authority.as_str())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        anyhow::Ok(response.status())
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Ok(status)) if status.is_success() => Ok(()),
        Ok(Ok(status)) => {
            anyhow::bail!("target {} answered GET /healthz with {status}", target.base)
        }
        Ok(Err(err)) => anyhow::bail!(
            "cannot reach target {} ({}): {err}",
            target.base,
            target.addr
        ),
        Err(_) => anyhow::bail!(
            "target {} did not answer GET /healthz within 3 s",
            target.base
        ),
    }
}
