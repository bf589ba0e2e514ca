//! Options that several commands share, defined once.

use std::path::PathBuf;
use std::time::Duration;

use linq_hooks_http::{EgressPolicy, HttpTransport, IpNet, Proxies};
use linq_hooks_signature::Secret;

use crate::output::errln;
use crate::{Outcome, report};

/// `--secret` (or `LINQ_HOOKS_SECRET`): what `dispatch` and `serve` sign with and `listen`
/// checks against.
#[derive(Debug, clap::Args)]
pub(crate) struct Secrets {
    /// A Standard Webhooks secret, `whsec_` followed by base64. Repeat it (or separate with
    /// commas) during a rotation: senders add one signature per secret, `listen` accepts any.
    #[arg(
        long = "secret",
        value_name = "whsec_...",
        env = "LINQ_HOOKS_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    values: Vec<String>,
}

impl Secrets {
    /// Parses the values here rather than in clap, whose errors quote the value: a secret with
    /// a typo is still a secret, and must not land in a terminal's scrollback or a CI log.
    pub(crate) fn parse(&self) -> Result<Vec<Secret>, Outcome> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                value.parse::<Secret>().map_err(|e| {
                    errln!("error: --secret number {}: {}", i + 1, report::chain(&e));
                    Outcome::UsageOrIo
                })
            })
            .collect()
    }
}

/// How `dispatch` and `serve` send: timeout, requests in flight, extra CAs, the proxy and the
/// egress policy.
#[derive(Debug, clap::Args)]
pub(crate) struct Sending {
    /// The time one request may take, connection and response included (more than zero).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = positive_duration)]
    pub(crate) timeout: Duration,
    /// At most this many requests in flight, over all hooks.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) concurrency: u32,
    /// Trust the certificate authorities in this PEM file too (for receivers behind an
    /// internal CA), besides the platform's.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Send through this proxy, http and https targets alike, instead of the ones the
    /// environment names (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, read as curl reads them); hosts
    /// listed in NO_PROXY still go direct. An http, https, socks5 or socks5h URL, credentials
    /// as http://user:password@host:port. `--proxy none` (or an empty value) connects directly
    /// whatever the environment says.
    #[arg(long, value_name = "URL")]
    pub(crate) proxy: Option<String>,
    /// Refuse to connect to private and special-purpose addresses: loopback, link-local
    /// (169.254.169.254, the cloud metadata address, included), RFC 1918, 100.64.0.0/10,
    /// unique-local fc00::/7, multicast and the rest of IANA's special-purpose ranges. Checked
    /// on the address connected to, after DNS resolution; a refused attempt fails at once,
    /// naming the rule.
    #[arg(long)]
    pub(crate) deny_private: bool,
    /// Allow connecting to this network even if a deny rule covers it (such as a lab's
    /// receiver at 10.20.0.0/16 with --deny-private). Repeatable.
    #[arg(long = "allow-cidr", value_name = "CIDR", value_parser = parse_cidr)]
    pub(crate) allow_cidr: Vec<IpNet>,
    /// Refuse to connect to this network (such as 10.0.0.0/8 or fd00::/8; a bare address is a
    /// network of one). Repeatable.
    #[arg(long = "deny-cidr", value_name = "CIDR", value_parser = parse_cidr)]
    pub(crate) deny_cidr: Vec<IpNet>,
}

/// A duration above zero, as humantime writes it (`10s`, `1m 30s`, `500ms`): for timeouts,
/// where zero would fail everything at once.
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A network as `--allow-cidr` and `--deny-cidr` take it: `10.0.0.0/8`, `fd00::/8`, or a bare
/// address for a network of one.
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "`{text}` is not an IP network: expected an address and a prefix length, such as 10.0.0.0/8 or fd00::/8 (IPv4 prefixes go up to 32, IPv6 up to 128)"
            )
        })
}

/// The `NO_PROXY` of the environment, in curl's order (lower case first).
fn no_proxy_from_env() -> String {
    ["no_proxy", "NO_PROXY"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_default()
}

impl Sending {
    /// The PEM of `--ca-file`, read once for every transport that trusts it; the problem is
    /// printed on stderr.
    pub(crate) fn extra_root_pem(&self) -> Result<Option<Vec<u8>>, Outcome> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        std::fs::read(path).map(Some).map_err(|e| {
            errln!(
                "error: cannot read {}: {}",
                path.display(),
                report::chain(&e)
            );
            Outcome::UsageOrIo
        })
    }

    /// The HTTP transport these options describe, trusting `extra_root_pem` besides the
    /// platform's roots; the problem is printed on stderr. It keeps as many idle connections
    /// per host as requests may be in flight, so that hooks sharing a receiver reuse
    /// connections instead of opening new ones.
    pub(crate) fn transport(
        &self,
        extra_root_pem: Option<&[u8]>,
    ) -> Result<HttpTransport, Outcome> {
        let proxies = self.proxies()?;
        let egress = self.egress();
        let cidrs = |nets: &[IpNet]| {
            nets.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        tracing::info!(
            %proxies,
            deny_private = self.deny_private,
            allow_cidr = %cidrs(&self.allow_cidr),
            deny_cidr = %cidrs(&self.deny_cidr),
            timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            concurrency = self.concurrency,
            "sending settings"
        );
        let mut builder = HttpTransport::builder()
            .timeout(self.timeout)
            .pool_max_idle_per_host(self.concurrency as usize)
            .proxies(proxies)
            .egress(egress);
        if let Some(pem) = extra_root_pem {
            builder = builder.extra_root_pem(pem);
        }
        builder.build().map_err(|e| {
            errln!("error: cannot set up HTTP: {}", report::chain(&e));
            Outcome::UsageOrIo
        })
    }

    /// `--proxy`, else the environment's proxy variables; the problem printed on stderr.
    fn proxies(&self) -> Result<Proxies, Outcome> {
        let (flag, proxies) = match self.proxy.as_deref().map(str::trim) {
            Some("" | "none") => return Ok(Proxies::none()),
            Some(url) => ("--proxy: ", Proxies::all(url, &no_proxy_from_env())),
            None => ("", Proxies::from_env()),
        };
        proxies.map_err(|e| {
            errln!("error: {flag}{e}");
            Outcome::UsageOrIo
        })
    }

    /// `--deny-private`, `--deny-cidr` and `--allow-cidr` as a policy.
    pub(crate) fn egress(&self) -> EgressPolicy {
        let mut policy = EgressPolicy::new();
        if self.deny_private {
            policy = policy.deny_private();
        }
        for net in &self.deny_cidr {
            policy = policy.deny_cidr(*net);
        }
        for net in &self.allow_cidr {
            policy = policy.allow_cidr(*net);
        }
        policy
    }
}
