//! The connector under the TLS layer: direct, through an HTTP proxy, or through a CONNECT
//! tunnel; every address connected to checked by the egress policy first.
//!
//! ```text
//! HttpsConnector (TLS to https targets, ALPN h2 + http/1.1)
//!   └─ Connector::call(target)
//!        ├─ no proxy ─────────────── Guarded ─▶ TCP to the target
//!        ├─ http target, proxy ───── HttpsConnector (TLS to https proxies) ─▶ Guarded ─▶ TCP to the proxy;
//!        │                           the connection is marked proxied: requests go in absolute form
//!        ├─ https target, proxy ──── Tunnel (CONNECT host:port) over the same; TLS to the target above
//!        └─ SOCKS5 proxy ─────────── Guarded ─▶ TCP to the proxy, then SocksV5 (socks5: the target's name
//!                                    resolved here, by the Resolver; socks5h: by the proxy); TLS above
//! ```

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use linq_hooks_transport::BoxError;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::proxy::Proxies;
use crate::{EgressPolicy, Refused};

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;
type Tcp = TokioIo<TcpStream>;

/// Name resolution that keeps only the addresses the policy allows: the connector then
/// connects to exactly those, with no second lookup (DNS rebinding cannot slip through).
#[derive(Clone)]
pub(crate) struct Resolver {
    gai: GaiResolver,
    policy: Option<Arc<EgressPolicy>>,
}

impl Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.gai.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.gai.call(name);
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = resolving.await?.collect();
            let Some(policy) = policy else {
                return Ok(addrs.into_iter());
            };
            let mut first_refusal = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|addr| match policy.check(*addr) {
                    Ok(()) => true,
                    Err(refused) => {
                        first_refusal.get_or_insert(refused);
                        false
                    }
                })
                .collect();
            match first_refusal {
                Some(refused) if allowed.is_empty() => Err(refused.into()),
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

/// TCP connections with the egress policy applied: IP-literal hosts here (the connector does
/// not resolve them), host names in the [`Resolver`]. A refusal comes out as the [`Refused`]
/// itself, with the port filled in.
#[derive(Clone)]
pub(crate) struct Guarded {
    tcp: HttpConnector<Resolver>,
    policy: Option<Arc<EgressPolicy>>,
}

impl Guarded {
    pub(crate) fn new(mut tcp: HttpConnector<Resolver>, policy: Option<Arc<EgressPolicy>>) -> Self {
        tcp.enforce_http(false); // the TLS layer above handles https
        Guarded { tcp, policy }
    }

    pub(crate) fn resolver(policy: Option<Arc<EgressPolicy>>) -> Resolver {
        Resolver {
            gai: GaiResolver::new(),
            policy,
        }
    }
}

/// The port `uri` connects to: the given one, else the scheme's.
fn port_of(uri: &http::Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        })
}

/// The IP address `uri`'s host is written as, if it is one.
fn ip_literal(uri: &http::Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// The policy's verdict on `uri` when its host is an IP address; `Ok` for host names.
fn check_literal(policy: Option<&EgressPolicy>, uri: &http::Uri) -> Result<(), Refused> {
    match (policy, ip_literal(uri)) {
        (Some(policy), Some(ip)) => policy.check(SocketAddr::new(ip, port_of(uri))),
        _ => Ok(()),
    }
}

/// The [`Refused`] somewhere in `err`'s chain, if any.
pub(crate) fn find_refused<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return Some(refused);
        }
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

impl Service<http::Uri> for Guarded {
    type Response = Tcp;
    type Error = BoxError;
    type Future = BoxFuture<Tcp>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        if let Err(refused) = check_literal(self.policy.as_deref(), &uri) {
            return Box::pin(async move { Err(refused.into()) });
        }
        let port = port_of(&uri);
        let connecting = self.tcp.call(uri);
        Box::pin(async move {
            connecting.await.map_err(|e| match find_refused(&e) {
                Some(refused) => refused.clone().with_port(port).into(),
                None => e.into(),
            })
        })
    }
}

/// A connection the [`Connector`] made: to the target, through a tunnel, or to an HTTP
/// proxy (`proxied`, so that the client writes requests in absolute form).
pub(crate) struct Conn {
    io: MaybeHttpsStream<Tcp>,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        // The TLS to a proxy offers http/1.1 only, so no h2 from here misleads the client.
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// Direct, or through the proxy [`Proxies`] names for the target.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) direct: Guarded,
    /// To the proxy itself: TLS for `https://` proxies, http/1.1 only.
    pub(crate) to_proxy: HttpsConnector<Guarded>,
    pub(crate) proxies: Proxies,
    pub(crate) policy: Option<Arc<EgressPolicy>>,
    /// For `socks5://` proxies, which leave name resolution to us.
    pub(crate) resolver: Resolver,
}

impl Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = BoxFuture<Conn>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // `Guarded` and `HttpsConnector` are always ready (their resolver spawns per call).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: http::Uri) -> Self::Future {
        let Some(intercept) = self.proxies.intercept(&target) else {
            let connecting = self.direct.call(target);
            return Box::pin(async move {
                Ok(Conn {
                    io: MaybeHttpsStream::Http(connecting.await?),
                    proxied: false,
                })
            });
        };
        // A target written as an IP address is checked here: the proxy will connect to it.
        if let Err(refused) = check_literal(self.policy.as_deref(), &target) {
            return Box::pin(async move { Err(refused.into()) });
        }
        let proxy = intercept.uri().clone();
        let connecting = self.through(&target, &intercept);
        Box::pin(async move {
            connecting
                .await
                .map_err(|source| match find_refused(&*source) {
                    Some(_) => source,
                    None => ThroughProxy { proxy, source }.into(),
                })
        })
    }
}

impl Connector {
    /// The connection to `target` through the proxy `intercept` names, its errors as they come.
    fn through(
        &mut self,
        target: &http::Uri,
        intercept: &hyper_util::client::proxy::matcher::Intercept,
    ) -> BoxFuture<Conn> {
        if let Some(scheme @ ("socks5" | "socks5h")) = intercept.uri().scheme_str() {
            return Box::pin(socks5(
                self.direct.clone(),
                self.resolver.clone(),
                intercept.uri().clone(),
                intercept
                    .raw_auth()
                    .map(|(user, password)| (user.to_string(), password.to_string())),
                scheme == "socks5",
                with_port(target),
            ));
        }
        if target.scheme_str() == Some("https") {
            let mut tunnel = Tunnel::new(intercept.uri().clone(), self.to_proxy.clone());
            if let Some(auth) = intercept.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            // The tunnel takes a missing port for 443; say it.
            let target = with_port(target);
            Box::pin(async move {
                let io = match tunnel.call(target).await {
                    Ok(io) => io,
                    Err(e) => return Err(unwrap_refused(e.into(), None)),
                };
                Ok(Conn { io, proxied: false })
            })
        } else {
            let connecting = self.to_proxy.call(intercept.uri().clone());
            Box::pin(async move {
                Ok(Conn {
                    io: connecting.await?,
                    proxied: true,
                })
            })
        }
    }
}

/// A failure on the way through a proxy (the proxy down, refusing the tunnel, a SOCKS5
/// handshake that failed): says which proxy, so that "connection refused" is not taken for the
/// receiver's. Shown as `through the proxy http://127.0.0.1:3128/`, the cause as its source;
/// the proxy URL without credentials.
#[derive(Debug)]
struct ThroughProxy {
    proxy: http::Uri,
    source: BoxError,
}

impl std::fmt::Display for ThroughProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "through the proxy {}", self.proxy)
    }
}

impl std::error::Error for ThroughProxy {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A connection to `target` through the SOCKS5 proxy at `proxy`: TCP to the proxy (checked by
/// the policy), the target's name resolved here for `socks5` (checked; the proxy gets the
/// address) or left to the proxy for `socks5h`, then hyper-util's SOCKS5 handshake.
async fn socks5(
    mut direct: Guarded,
    mut resolver: Resolver,
    proxy: http::Uri,
    auth: Option<(String, String)>,
    local_dns: bool,
    target: http::Uri,
) -> Result<Conn, BoxError> {
    // curl's default port for SOCKS.
    let proxy = match proxy.port() {
        Some(_) => proxy,
        None => format!(
            "{}://{}:1080/",
            proxy.scheme_str().unwrap_or("socks5"),
            proxy.host().unwrap_or_default()
        )
        .parse()?,
    };
    let tcp = direct.call(proxy.clone()).await?;
    let port = port_of(&target);
    let target = match (local_dns, target.host()) {
        (true, Some(host)) if ip_literal(&target).is_none() => {
            let name: Name = host.parse()?;
            let first = resolver
                .call(name)
                .await
                .map_err(|e| unwrap_refused(e, Some(port)))?
                .next()
                .ok_or("the name resolved to no address")?;
            let addr = SocketAddr::new(first.ip(), port);
            format!("{}://{addr}/", target.scheme_str().unwrap_or("http")).parse()?
        }
        _ => target,
    };
    let mut socks = SocksV5::new(
        proxy,
        Connected1(Arc::new(std::sync::Mutex::new(Some(tcp)))),
    );
    if let Some((user, password)) = auth {
        socks = socks.with_auth(user, password);
    }
    let io = socks.call(target).await?;
    Ok(Conn {
        io: MaybeHttpsStream::Http(io),
        proxied: false,
    })
}

/// A connector that hands out one connection made beforehand (so that connecting to a SOCKS
/// proxy goes through [`Guarded`], whose refusals then read as they do elsewhere).
#[derive(Clone)]
struct Connected1(Arc<std::sync::Mutex<Option<Tcp>>>);

impl Service<http::Uri> for Connected1 {
    type Response = Tcp;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Tcp, std::io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _proxy: http::Uri) -> Self::Future {
        let taken = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        std::future::ready(
            taken.ok_or_else(|| {
                std::io::Error::other("the connection to the proxy was used already")
            }),
        )
    }
}

/// `err` itself, or the [`Refused`] in its chain (with `port`, when the refusal came from name
/// resolution, which knows no port), so that a refusal reads the same whichever way the
/// connection went.
fn unwrap_refused(err: BoxError, port: Option<u16>) -> BoxError {
    match (find_refused(&*err), port) {
        (Some(refused), Some(port)) => refused.clone().with_port(port).into(),
        (Some(refused), None) => refused.clone().into(),
        (None, _) => err,
    }
}

/// `uri` with its port written out.
fn with_port(uri: &http::Uri) -> http::Uri {
    if uri.port().is_some() {
        return uri.clone();
    }
    let host = uri.host().unwrap_or_default();
    format!(
        "{}://{host}:{}/",
        uri.scheme_str().unwrap_or("https"),
        port_of(uri)
    )
    .parse()
    .unwrap_or_else(|_| uri.clone())
}
