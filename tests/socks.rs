//! A real SOCKS5 proxy for tests (RFC 1928, with RFC 1929 user/password): a Tokio server on
//! 127.0.0.1 that records each `CONNECT` and tunnels its bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running SOCKS5 proxy. It stops when dropped.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let proxy = linq_hooks_tests::Socks5Proxy::start(None).await;
/// assert!(proxy.url("socks5h").starts_with("socks5h://127.0.0.1:"));
/// assert!(proxy.connects().is_empty());
/// # });
/// ```
pub struct Socks5Proxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Socks5Proxy {
    /// Starts a proxy on a free port of 127.0.0.1; with `credentials`, it asks for them
    /// (user/password) and refuses others.
    pub async fn start(credentials: Option<(&str, &str)>) -> Socks5Proxy {
        Socks5Proxy::start_on(Ipv4Addr::LOCALHOST.into(), credentials).await
    }

    /// Like [`start`](Socks5Proxy::start), on another address (such as 127.0.0.2, which Linux
    /// answers on too), for tests that tell the proxy's address from a target's.
    pub async fn start_on(ip: IpAddr, credentials: Option<(&str, &str)>) -> Socks5Proxy {
        let listener = TcpListener::bind((ip, 0)).await.expect("a free port");
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let credentials = credentials.map(|(u, p)| (u.as_bytes().to_vec(), p.as_bytes().to_vec()));
        let task = tokio::spawn({
            let log = log.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (log, credentials) = (log.clone(), credentials.clone());
                    tokio::spawn(async move {
                        let _ = serve(stream, &log, credentials).await;
                    });
                }
            }
        });
        Socks5Proxy { addr, log, task }
    }

    /// `SCHEME://127.0.0.1:PORT`, for `socks5` or `socks5h`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Each tunnel asked for, as `domain HOST:PORT` or `ip ADDRESS`, in order.
    pub fn connects(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Socks5Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Credentials = Option<(Vec<u8>, Vec<u8>)>;

async fn serve(
    mut client: TcpStream,
    log: &Mutex<Vec<String>>,
    credentials: Credentials,
) -> std::io::Result<()> {
    let mut head = [0; 2];
    client.read_exact(&mut head).await?;
    let mut methods = vec![0; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    let wanted = if credentials.is_some() { 2 } else { 0 };
    if head[0] != 5 || !methods.contains(&wanted) {
        client.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    client.write_all(&[5, wanted]).await?;
    if let Some((user, password)) = credentials {
        let mut version_len = [0; 2];
        client.read_exact(&mut version_len).await?;
        let mut got_user = vec![0; usize::from(version_len[1])];
        client.read_exact(&mut got_user).await?;
        let mut len = [0; 1];
        client.read_exact(&mut len).await?;
        let mut got_password = vec![0; usize::from(len[0])];
        client.read_exact(&mut got_password).await?;
        if got_user != user || got_password != password {
            client.write_all(&[1, 1]).await?;
            return Ok(());
        }
        client.write_all(&[1, 0]).await?;
    }
    let mut request = [0; 4];
    client.read_exact(&mut request).await?;
    let (target, shown) = match request[3] {
        1 => {
            let mut ip = [0; 4];
            client.read_exact(&mut ip).await?;
            let ip = IpAddr::V4(Ipv4Addr::from(ip));
            let port = client.read_u16().await?;
            let addr = SocketAddr::new(ip, port);
            (addr.to_string(), format!("ip {addr}"))
        }
        4 => {
            let mut ip = [0; 16];
            client.read_exact(&mut ip).await?;
            let ip = IpAddr::V6(Ipv6Addr::from(ip));
            let port = client.read_u16().await?;
            let addr = SocketAddr::new(ip, port);
            (addr.to_string(), format!("ip {addr}"))
        }
        3 => {
            let len = client.read_u8().await?;
            let mut name = vec![0; usize::from(len)];
            client.read_exact(&mut name).await?;
            let port = client.read_u16().await?;
            let host = format!("{}:{port}", String::from_utf8_lossy(&name));
            (host.clone(), format!("domain {host}"))
        }
        _ => return Ok(()),
    };
    log.lock().unwrap().push(shown);
    match TcpStream::connect(target.as_str()).await {
        Ok(mut upstream) => {
            client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        }
        Err(_) => client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?,
    }
    Ok(())
}
