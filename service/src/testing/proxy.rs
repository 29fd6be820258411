//! A TCP proxy for fault tests: it sits between the service and a real
//! `redis-server` and, per test, passes traffic through, adds latency,
//! freezes the connections it already has (a network blackhole: the peer
//! sees silence, not a reset), resets them, or refuses new ones. The faults
//! are those of real networks, so the tests exercise the real Redis client,
//! its timeouts and its reconnects; no crate of this shape is maintained, and
//! the whole harness is a page of tokio.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// What an established proxied connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Forward bytes both ways (after the configured latency).
    Open,
    /// Stop forwarding and keep the sockets open: a blackhole.
    Frozen,
    /// Close both sides with a TCP reset.
    Reset,
}

#[derive(Default)]
struct Shared {
    /// One sender per live connection.
    links: Mutex<Vec<watch::Sender<Link>>>,
    /// Delay added before each forwarded chunk, in each direction.
    latency: Mutex<Duration>,
    /// New connections are reset on accept.
    refuse: Mutex<bool>,
}

/// The proxy, listening on a free port of 127.0.0.1; stopped when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Proxies a new listening port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        Self { addr, shared, task }
    }

    /// `redis://<proxy address>`.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Adds `latency` before every chunk forwarded from now on.
    pub fn set_latency(&self, latency: Duration) {
        *self.shared.latency.lock().unwrap() = latency;
    }

    /// Blackholes every connection open now; later ones pass through.
    pub fn freeze_existing(&self) {
        self.signal_existing(Link::Frozen);
    }

    /// Resumes forwarding on connections frozen earlier.
    pub fn thaw_existing(&self) {
        self.signal_existing(Link::Open);
    }

    /// Resets every connection open now.
    pub fn reset_existing(&self) {
        self.signal_existing(Link::Reset);
    }

    /// While `refuse` is true, new connections are reset as soon as they
    /// are accepted (what a client sees of a closed port on a live host).
    pub fn refuse_new(&self, refuse: bool) {
        *self.shared.refuse.lock().unwrap() = refuse;
    }

    /// Connections currently proxied (frozen ones included).
    pub fn connections(&self) -> usize {
        let mut links = self.shared.links.lock().unwrap();
        links.retain(|link| !link.is_closed());
        links.len()
    }

    fn signal_existing(&self, state: Link) {
        let mut links = self.shared.links.lock().unwrap();
        links.retain(|link| link.send(state).is_ok());
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.signal_existing(Link::Reset);
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors, say: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if *shared.refuse.lock().unwrap() {
            reset(&client);
            continue;
        }
        let (link, control) = watch::channel(Link::Open);
        shared.links.lock().unwrap().push(link);
        tokio::spawn(forward(client, upstream, control, Arc::clone(&shared)));
    }
}

/// SO_LINGER 0: closing the socket then sends RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut control: watch::Receiver<Link>,
    shared: Arc<Shared>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        reset(&client);
        return;
    };
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        let link = *control.borrow_and_update();
        match link {
            Link::Reset => break,
            Link::Frozen => {
                if control.changed().await.is_err() {
                    break;
                }
                continue;
            }
            Link::Open => {}
        }
        let latency = *shared.latency.lock().unwrap();
        let done = tokio::select! {
            read = client_read.read(&mut up) => relay(read, &up, &mut server_write, latency).await,
            read = server_read.read(&mut down) => relay(read, &down, &mut client_write, latency).await,
            _ = control.changed() => false,
        };
        if done {
            return;
        }
    }
    reset(&client);
    reset(&server);
}

/// Forwards one chunk; `true` when the connection is over.
async fn relay(
    read: std::io::Result<usize>,
    buffer: &[u8],
    to: &mut (impl AsyncWriteExt + Unpin),
    latency: Duration,
) -> bool {
    let Ok(n @ 1..) = read else {
        return true;
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    to.write_all(&buffer[..n]).await.is_err()
}
