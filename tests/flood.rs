//! A flood of half-sent requests: the slow-header attack of issue 11, bounded in count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// `clients` tasks that each connect, send half a request head (`POST /v1/events`, never
/// finished), hold the connection until the server cuts it off, and start again, until
/// [`stop`](Flood::stop).
///
/// ```no_run
/// # async fn f(addr: std::net::SocketAddr) {
/// let flood = linq_hooks_tests::Flood::start(addr, 100);
/// // … measure the server meanwhile …
/// let attempts = flood.stop().await;
/// # }
/// ```
pub struct Flood {
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicU64>,
    attempts: Arc<AtomicU64>,
    tasks: JoinSet<()>,
}

impl Flood {
    /// Starts the clients (on the current Tokio runtime) against `addr`.
    pub fn start(addr: SocketAddr, clients: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let (connected, attempts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut tasks = JoinSet::new();
        for _ in 0..clients {
            let (stop, connected, attempts) = (stop.clone(), connected.clone(), attempts.clone());
            tasks.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let connect = tokio::net::TcpStream::connect(addr);
                    let Ok(Ok(mut stream)) =
                        tokio::time::timeout(Duration::from_secs(5), connect).await
                    else {
                        continue;
                    };
                    connected.fetch_add(1, Ordering::Relaxed);
                    // Half a head, never finished; held until the server cuts it off.
                    let _ = stream
                        .write_all(b"POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-ty")
                        .await;
                    let mut buf = [0u8; 256];
                    while !stop.load(Ordering::Relaxed) {
                        let read =
                            tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf));
                        if let Ok(Ok(0) | Err(_)) = read.await {
                            break;
                        }
                    }
                }
            });
        }
        Flood {
            stop,
            connected,
            attempts,
            tasks,
        }
    }

    /// Connections made so far (each held until the server closed it, then made again).
    pub fn connected(&self) -> u64 {
        self.connected.load(Ordering::Relaxed)
    }

    /// Stops every client; returns how many connections they attempted in all.
    pub async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.tasks.shutdown().await;
        self.attempts.load(Ordering::Relaxed)
    }
}
