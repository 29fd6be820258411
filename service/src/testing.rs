//! Helpers for integration tests of this crate and of `loadgen`: a real
//! `redis-server` on a free port, and the service itself in-process on
//! `127.0.0.1:0`, and a fault-injecting TCP proxy between them ([`proxy`]).
//! Test-only, but public so both crates share one copy.

pub mod proxy;

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{config::Config, config::LogFormat, AppState};

/// A free TCP port on 127.0.0.1 (the OS picks it; tiny reuse race accepted).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free port on 127.0.0.1")
}

/// A `redis-server` child process, stopped (by PID) when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not come up: tests must
    /// fail loudly, never skip.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts `redis-server` on `port` (used to restart on the same port).
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start redis-server ({err}); install it with `apt-get install -y redis-server`")
            });
        let server = Self {
            child: Some(child),
            port,
        };
        server.wait_until_ready();
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Process id, for tests that pause it with SIGSTOP.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("redis-server already stopped")
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).expect("valid redis url");
        loop {
            if let Ok(mut connection) =
                client.get_connection_with_timeout(Duration::from_millis(200))
            {
                if redis::cmd("PING").query::<String>(&mut connection).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Test configuration: everything at the SPEC defaults except the Redis URL
/// and the listen address, which the harness chooses.
pub fn test_config(redis_url: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        redis_url: redis_url.to_owned(),
        key_prefix: "items:".into(),
        redis_timeout: Duration::from_millis(250),
        max_in_flight: 1024,
        fault_injection: false,
        log_format: LogFormat::Text,
    }
}

/// The service running in-process on a free port.
pub struct TestService {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestService {
    /// Starts the service with `config` (its `listen` is ignored).
    pub async fn start(config: &Config) -> Self {
        let state = AppState::from_config(config).expect("valid test configuration");
        Self::start_with_state(state).await
    }

    /// Starts the service around an existing state (e.g. an in-memory store).
    pub async fn start_with_state(state: AppState) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::run(listener, state.clone(), async move {
            let _ = signal.await;
        }));
        Self {
            addr,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Signals shutdown and waits for the server to finish draining.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.signal_shutdown();
        match self.task.take() {
            Some(task) => task.await.expect("server task panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.signal_shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
