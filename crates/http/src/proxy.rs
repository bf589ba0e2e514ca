//! Outbound proxies: which targets go through which proxy, from the environment or given.

use std::fmt;
use std::sync::Arc;

use hyper_util::client::proxy::matcher::{Intercept, Matcher};

/// Which proxy, if any, each request goes through; by default none.
///
/// An `http://` target goes through an HTTP proxy as a request in absolute form
/// (`POST http://host/path`); an `https://` target goes through a `CONNECT` tunnel, with TLS
/// to the target inside it, so the proxy sees neither the request nor the body. Credentials in
/// the proxy URL (`http://user:password@proxy:3128`, percent-encoded) are sent as
/// `Proxy-Authorization: Basic`. Proxies may be `http://` or `https://` (TLS to the proxy);
/// a URL without a scheme is `http://`. SOCKS5 proxies are `socks5://` (the target's name is
/// resolved here, and the proxy gets the address) or `socks5h://` (the proxy resolves it), port
/// 1080 unless given, credentials sent as SOCKS5 user/password; every target goes through them
/// as a plain TCP tunnel, with TLS to https targets inside. Other schemes (`socks4://`, …) are
/// refused when the settings are made, naming the scheme.
///
/// [`from_env`](Proxies::from_env) reads the variables curl reads:
///
/// | variable | used for |
/// | --- | --- |
/// | `http_proxy`, `HTTP_PROXY` | `http://` targets |
/// | `https_proxy`, `HTTPS_PROXY` | `https://` targets |
/// | `all_proxy`, `ALL_PROXY` | targets whose own variable is not set |
/// | `no_proxy`, `NO_PROXY` | targets that go direct: a comma-separated list of host names (each with its subdomains; a leading dot is allowed), IP addresses and networks (`10.0.0.0/8`), or `*` for all |
///
/// When both spellings of a variable are set, the lower-case one wins, as in curl. An empty
/// variable counts as unset.
///
/// ```
/// use linq_hooks_http::Proxies;
///
/// let vars = [
///     ("HTTPS_PROXY", "http://user:pa%24%24@proxy.lab:3128"),
///     ("http_proxy", "proxy.lab:8080"),
///     ("NO_PROXY", "lims.lab,10.0.0.0/8"),
/// ];
/// let proxies = Proxies::from_lookup(|name| {
///     vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
/// })?;
/// assert_eq!(proxies.proxy_for("https://hooks.example/in").as_deref(), Some("http://proxy.lab:3128/"));
/// assert_eq!(proxies.proxy_for("http://hooks.example/in").as_deref(), Some("http://proxy.lab:8080/"));
/// assert_eq!(proxies.proxy_for("https://eln.lims.lab/in"), None);
/// assert_eq!(proxies.proxy_for("http://10.1.2.3/in"), None);
/// # Ok::<(), linq_hooks_http::ProxyError>(())
/// ```
#[derive(Clone, Default)]
pub struct Proxies {
    matcher: Option<Arc<Matcher>>,
    /// What is configured, without credentials, for `Debug`.
    shown: Vec<String>,
}

/// The variables curl reads, each in the order curl tries its two spellings.
const HTTP_VARS: [&str; 2] = ["http_proxy", "HTTP_PROXY"];
const HTTPS_VARS: [&str; 2] = ["https_proxy", "HTTPS_PROXY"];
const ALL_VARS: [&str; 2] = ["all_proxy", "ALL_PROXY"];
const NO_VARS: [&str; 2] = ["no_proxy", "NO_PROXY"];

impl Proxies {
    /// No proxy: every request connects directly (the default).
    ///
    /// ```
    /// let proxies = linq_hooks_http::Proxies::none();
    /// assert_eq!(proxies.proxy_for("https://hooks.example/"), None);
    /// ```
    pub fn none() -> Self {
        Proxies::default()
    }

    /// The proxies the process environment names (see the table above).
    ///
    /// Fails when a variable holds a URL that is not a usable proxy, naming the variable.
    ///
    /// ```no_run
    /// let proxies = linq_hooks_http::Proxies::from_env()?;
    /// let transport = linq_hooks_http::HttpTransport::builder().proxies(proxies).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_env() -> Result<Self, ProxyError> {
        Proxies::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Proxies::from_env), with the variables read through `lookup`
    /// (`None` or an empty value for an unset one): for tests, and for settings kept elsewhere.
    ///
    /// ```
    /// let err = linq_hooks_http::Proxies::from_lookup(|name| {
    ///     (name == "ALL_PROXY").then(|| "socks4://127.0.0.1:1080".to_string())
    /// })
    /// .unwrap_err();
    /// assert!(err.is_unsupported_scheme());
    /// assert_eq!(
    ///     err.to_string(),
    ///     "ALL_PROXY: unsupported proxy scheme `socks4` in `socks4://127.0.0.1:1080` (supported: http, https, socks5, socks5h)"
    /// );
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ProxyError> {
        let first = |names: [&'static str; 2]| {
            names.into_iter().find_map(|name| {
                lookup(name)
                    .filter(|value| !value.trim().is_empty())
                    .map(|value| (name, value))
            })
        };
        let all = first(ALL_VARS);
        let http = first(HTTP_VARS).or_else(|| all.clone());
        let https = first(HTTPS_VARS).or(all);
        let no = first(NO_VARS).map(|(_, value)| value).unwrap_or_default();
        Proxies::make(http, https, no)
    }

    /// Every target through the proxy at `url`, except those `no_proxy` lists (in the form of
    /// the `NO_PROXY` variable; `""` for none). What `linq-hooks --proxy URL` does, with the
    /// `NO_PROXY` of the environment, as curl's `--proxy`.
    ///
    /// ```
    /// use linq_hooks_http::Proxies;
    ///
    /// let proxies = Proxies::all("http://127.0.0.1:3128", "localhost")?;
    /// assert_eq!(proxies.proxy_for("https://hooks.example/").as_deref(), Some("http://127.0.0.1:3128/"));
    /// assert_eq!(proxies.proxy_for("http://localhost:8080/"), None);
    /// assert!(Proxies::all("ftp://proxy.lab", "").unwrap_err().is_unsupported_scheme());
    /// # Ok::<(), linq_hooks_http::ProxyError>(())
    /// ```
    pub fn all(url: &str, no_proxy: &str) -> Result<Self, ProxyError> {
        let proxy = Some(("", url.to_string()));
        Proxies::make(proxy.clone(), proxy, no_proxy.to_string())
    }

    fn make(
        http: Option<(&'static str, String)>,
        https: Option<(&'static str, String)>,
        no: String,
    ) -> Result<Self, ProxyError> {
        if http.is_none() && https.is_none() {
            return Ok(Proxies::none());
        }
        let mut shown = Vec::new();
        let mut builder = Matcher::builder();
        if let Some((source, url)) = http {
            let intercept = check(source, &url)?;
            shown.push(format!("http targets via {}", intercept.uri()));
            builder = builder.http(url);
        }
        if let Some((source, url)) = https {
            let intercept = check(source, &url)?;
            shown.push(format!("https targets via {}", intercept.uri()));
            builder = builder.https(url);
        }
        // `*` sends everything direct, IP-address targets included, as in curl: hyper-util's
        // matcher applies `*` to host names only, so `http://10.0.0.5/` would still go through
        // the proxy.
        if no.split(',').any(|entry| entry.trim() == "*") {
            return Ok(Proxies::none());
        }
        if !no.trim().is_empty() {
            shown.push(format!("except {}", no.trim()));
        }
        Ok(Proxies {
            matcher: Some(Arc::new(builder.no(no).build())),
            shown,
        })
    }

    /// The proxy `url` goes through, without credentials, or `None` for a direct connection
    /// (also for a URL that cannot be read).
    ///
    /// ```
    /// let proxies = linq_hooks_http::Proxies::all("http://u:p@proxy.lab:3128", "")?;
    /// assert_eq!(proxies.proxy_for("http://hooks.example/").as_deref(), Some("http://proxy.lab:3128/"));
    /// # Ok::<(), linq_hooks_http::ProxyError>(())
    /// ```
    pub fn proxy_for(&self, url: &str) -> Option<String> {
        let uri: http::Uri = url.parse().ok()?;
        self.intercept(&uri).map(|i| i.uri().to_string())
    }

    /// True when no target goes through a proxy.
    ///
    /// ```
    /// assert!(linq_hooks_http::Proxies::none().is_none());
    /// ```
    pub fn is_none(&self) -> bool {
        self.matcher.is_none()
    }

    pub(crate) fn intercept(&self, uri: &http::Uri) -> Option<Intercept> {
        self.matcher.as_ref()?.intercept(uri)
    }
}

/// `url` read as hyper-util's matcher reads it, or why it is no proxy we can use.
fn check(source: &'static str, url: &str) -> Result<Intercept, ProxyError> {
    let url = url.trim();
    let scheme = url
        .split_once("://")
        .map_or("http", |(scheme, _)| scheme)
        .to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "socks5" | "socks5h") {
        return Err(ProxyError {
            source,
            shown: without_credentials(url),
            kind: ProxyErrorKind::UnsupportedScheme(scheme),
        });
    }
    // The matcher ignores what it cannot read; ask it about a target to find out.
    let probe: http::Uri = "http://probe.invalid/".parse().expect("a valid URI");
    Matcher::builder()
        .all(url.to_string())
        .build()
        .intercept(&probe)
        .ok_or_else(|| ProxyError {
            source,
            shown: without_credentials(url),
            kind: ProxyErrorKind::Invalid,
        })
}

/// `url` with any `user:password@` replaced by `***@`, for messages.
fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let shown_rest = match rest[..authority_end].rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_string(),
    };
    if scheme.is_empty() {
        shown_rest
    } else {
        format!("{scheme}://{shown_rest}")
    }
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Proxies").field(&self.shown).finish()
    }
}

/// Shows what goes where, without credentials: `none`, or for instance
/// `http targets via http://proxy.lab:3128/, https targets via http://proxy.lab:3128/, except localhost`.
///
/// ```
/// let proxies = linq_hooks_http::Proxies::all("http://u:p@proxy.lab:3128", "localhost")?;
/// assert_eq!(
///     proxies.to_string(),
///     "http targets via http://proxy.lab:3128/, https targets via http://proxy.lab:3128/, except localhost"
/// );
/// assert_eq!(linq_hooks_http::Proxies::none().to_string(), "none");
/// # Ok::<(), linq_hooks_http::ProxyError>(())
/// ```
impl fmt::Display for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shown.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.shown.join(", "))
        }
    }
}

/// Why a proxy setting cannot be used: the variable it came from (none for
/// [`Proxies::all`]), the URL without its credentials, and the problem.
///
/// ```
/// let err = linq_hooks_http::Proxies::all("http://", "").unwrap_err();
/// assert!(!err.is_unsupported_scheme());
/// assert_eq!(err.to_string(), "`http://` is not a proxy URL (expected http://[user:password@]host[:port])");
/// ```
#[derive(Debug)]
pub struct ProxyError {
    source: &'static str,
    shown: String,
    kind: ProxyErrorKind,
}

#[derive(Debug)]
enum ProxyErrorKind {
    UnsupportedScheme(String),
    Invalid,
}

impl ProxyError {
    /// True when the URL's scheme is not `http`, `https`, `socks5` or `socks5h` (such as
    /// `socks4`).
    ///
    /// ```
    /// let err = linq_hooks_http::Proxies::all("socks4a://127.0.0.1:1080", "").unwrap_err();
    /// assert!(err.is_unsupported_scheme());
    /// ```
    pub fn is_unsupported_scheme(&self) -> bool {
        matches!(self.kind, ProxyErrorKind::UnsupportedScheme(_))
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.source.is_empty() {
            write!(f, "{}: ", self.source)?;
        }
        let shown = &self.shown;
        match &self.kind {
            ProxyErrorKind::UnsupportedScheme(scheme) => write!(
                f,
                "unsupported proxy scheme `{scheme}` in `{shown}` (supported: http, https, socks5, socks5h)"
            ),
            ProxyErrorKind::Invalid => write!(
                f,
                "`{shown}` is not a proxy URL (expected http://[user:password@]host[:port])"
            ),
        }
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn both_spellings_lower_case_first_all_as_fallback() {
        let proxies = Proxies::from_lookup(lookup(&[
            ("HTTP_PROXY", "http://upper:1"),
            ("http_proxy", "http://lower:1"),
            ("ALL_PROXY", "http://all:1"),
        ]))
        .unwrap();
        assert_eq!(
            proxies.proxy_for("http://a.example/").as_deref(),
            Some("http://lower:1/")
        );
        assert_eq!(
            proxies.proxy_for("https://a.example/").as_deref(),
            Some("http://all:1/")
        );
        let proxies = Proxies::from_lookup(lookup(&[("https_proxy", "https://p:443")])).unwrap();
        assert_eq!(proxies.proxy_for("http://a.example/"), None);
        assert_eq!(
            proxies.proxy_for("https://a.example/").as_deref(),
            Some("https://p:443/")
        );
    }

    #[test]
    fn empty_variables_are_unset() {
        let proxies =
            Proxies::from_lookup(lookup(&[("http_proxy", " "), ("HTTP_PROXY", "http://p:1")]))
                .unwrap();
        assert_eq!(
            proxies.proxy_for("http://a.example/").as_deref(),
            Some("http://p:1/")
        );
        assert!(Proxies::from_lookup(lookup(&[])).unwrap().is_none());
    }

    #[test]
    fn no_proxy_rules() {
        let proxies = Proxies::from_lookup(lookup(&[
            ("ALL_PROXY", "http://p:1"),
            ("no_proxy", "lab.example, .corp.example,127.0.0.1,fd00::/8"),
        ]))
        .unwrap();
        for direct in [
            "http://lab.example/",
            "https://eln.lab.example/",
            "http://x.corp.example/",
            "http://127.0.0.1:8080/",
            "http://[fd00::5]/",
        ] {
            assert_eq!(proxies.proxy_for(direct), None, "{direct}");
        }
        for proxied in [
            "http://otherlab.example/",
            "http://127.0.0.2/",
            "https://[fe80::1]/",
        ] {
            assert!(proxies.proxy_for(proxied).is_some(), "{proxied}");
        }
    }

    /// `NO_PROXY=*` with a hook written with an IP address went through the proxy (found by
    /// `HTTP_PROXY=http://127.0.0.1:3128 NO_PROXY=* linq-hooks dispatch` to
    /// `http://127.0.0.1:9000/p1`): `*` is every host, addresses included, as in curl.
    #[test]
    fn no_proxy_star_sends_everything_direct() {
        for no in ["*", " * ", "lab.example, *"] {
            let proxies = Proxies::from_lookup(|name| match name {
                "HTTP_PROXY" | "HTTPS_PROXY" => Some("http://127.0.0.1:3128".to_string()),
                "NO_PROXY" => Some(no.to_string()),
                _ => None,
            })
            .unwrap();
            for direct in [
                "http://127.0.0.1:9000/p1",
                "https://[::1]:9000/",
                "http://10.1.2.3/",
                "https://hooks.example/",
            ] {
                assert_eq!(proxies.proxy_for(direct), None, "NO_PROXY={no:?}: {direct}");
            }
            assert!(proxies.is_none(), "NO_PROXY={no:?}");
            assert_eq!(proxies.to_string(), "none");
            let proxies = Proxies::all("http://127.0.0.1:3128", no).unwrap();
            assert_eq!(
                proxies.proxy_for("http://127.0.0.1:9000/p1"),
                None,
                "--proxy, NO_PROXY={no:?}"
            );
        }
        // A bad proxy URL is still refused with `NO_PROXY=*`.
        let err = Proxies::all("socks4://p:1080", "*").unwrap_err();
        assert!(err.is_unsupported_scheme());
    }

    #[test]
    fn bad_urls_are_named_without_credentials() {
        let err = Proxies::from_lookup(lookup(&[("HTTPS_PROXY", "socks4://u:secret@p:1080")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "HTTPS_PROXY: unsupported proxy scheme `socks4` in `socks4://***@p:1080` (supported: http, https, socks5, socks5h)"
        );
        let err = Proxies::all("http://u:secret@", "").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
