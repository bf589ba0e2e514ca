//! The egress policy: which addresses a transport may connect to (against SSRF). Transports
//! that connect to addresses (HTTP, MQTT) check each one with it; it does no IO itself.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Which IP addresses the transport may connect to; by default, every one.
///
/// A hook can name any URL, so a hook writer could make the sender reach the cloud metadata
/// address or a lab's internal services (server-side request forgery). Labs post to their
/// own networks on purpose, so the policy is opt-in:
///
/// - [`deny_private`](EgressPolicy::deny_private) refuses every address that is not globally
///   reachable: loopback, link-local (with 169.254.169.254, the cloud metadata address),
///   RFC 1918, shared (100.64.0.0/10), unique-local (fc00::/7), multicast, and the other
///   special-purpose ranges of IANA's IPv4 and IPv6 special-purpose address registries
///   ([`PRIVATE_RANGES`]).
/// - [`deny_cidr`](EgressPolicy::deny_cidr) refuses a network of your choosing.
/// - [`allow_cidr`](EgressPolicy::allow_cidr) allows a network even if a deny rule covers it.
///
/// The rules are checked against each address the transport is about to connect to, after
/// name resolution: the addresses checked are the ones connected to, with no second lookup in
/// between, so a name that resolves to a public address when checked and a private one when
/// used (DNS rebinding) cannot slip through. URLs with an IP address as host are checked the
/// same way. Of a name's addresses, the refused ones are skipped; when none is left the attempt
/// fails with [`is_refused`](crate::Error::is_refused), naming the rule. An
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is checked as its IPv4 address.
///
/// Through a proxy (`linq_hooks_http::Proxies`) the transport connects to the proxy, so the
/// proxy's address is checked; a target whose host is an IP address is checked too, before
/// the proxy is asked. A target host *name* is resolved by the proxy, out of the transport's
/// sight: there the proxy's own rules must do the job. Each transport's documentation says
/// how it applies the policy.
///
/// Rules are named in refusals as `linq-hooks`'s command-line flags spell them:
///
/// ```
/// use linq_hooks_transport::EgressPolicy;
///
/// let policy = EgressPolicy::new()
///     .deny_private()
///     .allow_cidr("10.20.0.0/16".parse()?)
///     .deny_cidr("203.0.113.7/32".parse()?);
/// assert!(policy.check("10.20.1.2:443".parse()?).is_ok());
/// assert_eq!(
///     policy.check("169.254.169.254:80".parse()?).unwrap_err().to_string(),
///     "refused by --deny-private (link-local 169.254.0.0/16): 169.254.169.254:80"
/// );
/// assert_eq!(
///     policy.check("[::ffff:127.0.0.1]:8080".parse()?).unwrap_err().to_string(),
///     "refused by --deny-private (loopback 127.0.0.0/8): [::ffff:127.0.0.1]:8080"
/// );
/// assert_eq!(
///     policy.check("203.0.113.7:443".parse()?).unwrap_err().to_string(),
///     "refused by --deny-cidr 203.0.113.7/32: 203.0.113.7:443"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    deny_private: bool,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl EgressPolicy {
    /// A policy that allows every address (the default).
    ///
    /// ```
    /// let policy = linq_hooks_transport::EgressPolicy::new();
    /// assert!(policy.allows_everything());
    /// assert!(policy.check("127.0.0.1:80".parse()?).is_ok());
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn new() -> Self {
        EgressPolicy::default()
    }

    /// Refuses the addresses in [`PRIVATE_RANGES`]: every range the IANA special-purpose
    /// registries mark as not globally reachable, and multicast.
    ///
    /// ```
    /// let policy = linq_hooks_transport::EgressPolicy::new().deny_private();
    /// assert!(policy.check("192.168.1.20:443".parse()?).is_err());
    /// assert!(policy.check("[fd12::1]:443".parse()?).is_err());
    /// assert!(policy.check("93.184.215.14:443".parse()?).is_ok());
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn deny_private(mut self) -> Self {
        self.deny_private = true;
        self
    }

    /// Allows the addresses of `net` even when a deny rule covers them. May be given many
    /// times. A bare address is a network of one (`10.0.0.5` is `10.0.0.5/32`).
    ///
    /// ```
    /// let policy = linq_hooks_transport::EgressPolicy::new()
    ///     .deny_private()
    ///     .allow_cidr("127.0.0.1/32".parse()?);
    /// assert!(policy.check("127.0.0.1:8080".parse()?).is_ok());
    /// assert!(policy.check("127.0.0.2:8080".parse()?).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allow_cidr(mut self, net: IpNet) -> Self {
        self.allow.push(net);
        self
    }

    /// Refuses the addresses of `net` (unless an [`allow_cidr`](EgressPolicy::allow_cidr)
    /// covers them). May be given many times.
    ///
    /// ```
    /// let policy = linq_hooks_transport::EgressPolicy::new().deny_cidr("127.0.0.0/8".parse()?);
    /// let refused = policy.check("127.0.0.1:4567".parse()?).unwrap_err();
    /// assert_eq!(refused.to_string(), "refused by --deny-cidr 127.0.0.0/8: 127.0.0.1:4567");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn deny_cidr(mut self, net: IpNet) -> Self {
        self.deny.push(net);
        self
    }

    /// True when no rule denies anything (allow rules alone change nothing).
    ///
    /// ```
    /// use linq_hooks_transport::EgressPolicy;
    /// assert!(EgressPolicy::new().allows_everything());
    /// assert!(!EgressPolicy::new().deny_private().allows_everything());
    /// ```
    pub fn allows_everything(&self) -> bool {
        !self.deny_private && self.deny.is_empty()
    }

    /// Whether the transport may connect to `addr`; if not, the rule that refuses it.
    ///
    /// Allow rules first, then deny rules in the order given, then `deny_private`.
    ///
    /// ```
    /// let policy = linq_hooks_transport::EgressPolicy::new().deny_private();
    /// let refused = policy.check("10.1.2.3:443".parse()?).unwrap_err();
    /// assert_eq!(refused.address(), "10.1.2.3:443".parse()?);
    /// assert_eq!(refused.to_string(), "refused by --deny-private (private-use 10.0.0.0/8): 10.1.2.3:443");
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refused> {
        let ip = addr.ip();
        let canonical = ip.to_canonical();
        let covers = |net: &IpNet| net.contains(&ip) || net.contains(&canonical);
        if self.allow.iter().any(covers) {
            return Ok(());
        }
        let refused = |rule| Err(Refused { addr, rule });
        if canonical.is_unspecified() {
            // Connecting to 0.0.0.0 or :: reaches this host, as its loopback address does: a
            // rule that refuses the one refuses the other.
            let loopback: IpAddr = match canonical {
                IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            };
            if let Err(Refused { rule, .. }) = self.check(SocketAddr::new(loopback, addr.port())) {
                return refused(rule);
            }
        }
        if let Some(net) = self.deny.iter().find(|net| covers(net)) {
            return refused(Rule::DenyCidr(*net));
        }
        if self.deny_private
            && let Some(range) = private_range(canonical)
        {
            return refused(Rule::DenyPrivate(range));
        }
        Ok(())
    }
}

/// An address the [`EgressPolicy`] refused, and the rule that refused it.
///
/// Shown as `refused by RULE: ADDRESS`, where RULE is `--deny-cidr NET` or
/// `--deny-private (NAME NET)`.
///
/// ```
/// let policy = linq_hooks_transport::EgressPolicy::new().deny_private();
/// let refused = policy.check("[fe80::1]:443".parse()?).unwrap_err();
/// assert_eq!(refused.to_string(), "refused by --deny-private (link-local fe80::/10): [fe80::1]:443");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    addr: SocketAddr,
    rule: Rule,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    DenyCidr(IpNet),
    DenyPrivate(&'static PrivateRange),
}

impl Refused {
    /// The address refused.
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// The same refusal for `port`: a resolver knows the address before the port.
    ///
    /// ```
    /// let policy = linq_hooks_transport::EgressPolicy::new().deny_cidr("127.0.0.0/8".parse().unwrap());
    /// let refused = policy.check("127.0.0.1:0".parse().unwrap()).unwrap_err().with_port(1883);
    /// assert_eq!(refused.address().port(), 1883);
    /// ```
    pub fn with_port(mut self, port: u16) -> Self {
        self.addr.set_port(port);
        self
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::DenyCidr(net) => write!(f, "refused by --deny-cidr {net}: {}", self.addr),
            Rule::DenyPrivate(range) => write!(
                f,
                "refused by --deny-private ({} {}): {}",
                range.name, range.net, self.addr
            ),
        }
    }
}

impl std::error::Error for Refused {}

/// One range that [`EgressPolicy::deny_private`] refuses: the network and the name the
/// registry gives it.
#[derive(Debug, PartialEq, Eq)]
pub struct PrivateRange {
    /// The network.
    pub net: IpNet,
    /// What it is, in the registry's words, shortened.
    pub name: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8, name: &'static str) -> PrivateRange {
    PrivateRange {
        net: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)),
        name,
    }
}

const fn v6(segments: [u16; 8], prefix: u8, name: &'static str) -> PrivateRange {
    let [a, b, c, d, e, f, g, h] = segments;
    PrivateRange {
        net: IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(a, b, c, d, e, f, g, h),
            prefix,
        )),
        name,
    }
}

/// The ranges [`EgressPolicy::deny_private`] refuses.
///
/// Source: IANA's IPv4 and IPv6 Special-Purpose Address Registries (as of 2025), every entry
/// whose "Globally Reachable" is False, plus multicast (224.0.0.0/4, ff00::/8) and limited
/// broadcast. Whole blocks are refused where the registry makes a few addresses inside them
/// global (192.0.0.0/24, 2001::/23): none of those is a web server. Two IPv6 forms carry an
/// IPv4 address, and are checked as that address: IPv4-mapped (`::ffff:0:0/96`) and NAT64
/// (`64:ff9b::/96`, whose gateway would connect to the embedded address). IPv4-compatible
/// addresses (`::/96`, deprecated) are refused whole.
///
/// ```
/// use linq_hooks_transport::PRIVATE_RANGES;
/// assert!(PRIVATE_RANGES.iter().any(|r| r.net.to_string() == "100.64.0.0/10"));
/// assert!(PRIVATE_RANGES.iter().any(|r| r.net.to_string() == "fc00::/7"));
/// ```
pub const PRIVATE_RANGES: &[PrivateRange] = &[
    v4(0, 0, 0, 0, 8, "this network"),
    v4(10, 0, 0, 0, 8, "private-use"),
    v4(100, 64, 0, 0, 10, "shared address space"),
    v4(127, 0, 0, 0, 8, "loopback"),
    v4(169, 254, 0, 0, 16, "link-local"),
    v4(172, 16, 0, 0, 12, "private-use"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments"),
    v4(192, 0, 2, 0, 24, "documentation"),
    v4(192, 168, 0, 0, 16, "private-use"),
    v4(198, 18, 0, 0, 15, "benchmarking"),
    v4(198, 51, 100, 0, 24, "documentation"),
    v4(203, 0, 113, 0, 24, "documentation"),
    v4(224, 0, 0, 0, 4, "multicast"),
    v4(240, 0, 0, 0, 4, "reserved"), // includes 255.255.255.255, limited broadcast
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "unspecified or IPv4-compatible",
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use IPv4/IPv6 translation",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy prefix"),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments",
    ),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing SIDs"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
];

/// The NAT64 well-known prefix, 64:ff9b::/96: the last 32 bits are an IPv4 address.
const NAT64: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// The private range `ip` (already canonical: IPv4-mapped addresses as IPv4) is in, if any.
fn private_range(ip: IpAddr) -> Option<&'static PrivateRange> {
    let ip = match ip {
        IpAddr::V6(v6) if NAT64.contains(&v6) => {
            let [.., a, b, c, d] = v6.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        }
        ip => ip,
    };
    PRIVATE_RANGES.iter().find(|range| range.net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(policy: &EgressPolicy, addr: &str) -> Option<String> {
        policy
            .check(addr.parse().unwrap())
            .err()
            .map(|r| r.to_string())
    }

    #[test]
    fn deny_private_covers_the_special_purpose_ranges() {
        let policy = EgressPolicy::new().deny_private();
        let refused = [
            "0.0.0.0:80",
            "10.0.0.1:80",
            "100.64.0.1:80",
            "100.127.255.254:80",
            "127.0.0.1:80",
            "127.255.255.255:80",
            "169.254.169.254:80",
            "172.16.0.1:80",
            "172.31.255.255:80",
            "192.0.0.8:80",
            "192.0.2.1:80",
            "192.168.0.1:80",
            "198.18.0.1:80",
            "198.19.255.255:80",
            "198.51.100.1:80",
            "203.0.113.1:80",
            "224.0.0.1:80",
            "239.255.255.250:80",
            "240.0.0.1:80",
            "255.255.255.255:80",
            "[::1]:80",
            "[::]:80",
            "[::127.0.0.1]:80",
            "[::ffff:10.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::a9fe:a9fe]:80", // NAT64 of 169.254.169.254
            "[64:ff9b:1::1]:80",
            "[100::1]:80",
            "[2001:db8::1]:80",
            "[2001::1]:80",
            "[3fff::1]:80",
            "[fc00::1]:80",
            "[fdff:ffff::1]:80",
            "[fe80::1]:80",
            "[febf::1]:80",
            "[ff02::1]:80",
        ];
        for addr in refused {
            assert!(refusal(&policy, addr).is_some(), "{addr} should be refused");
        }
        let allowed = [
            "1.1.1.1:443",
            "8.8.8.8:443",
            "100.63.255.255:443",
            "100.128.0.0:443",
            "172.15.255.255:443",
            "172.32.0.0:443",
            "192.0.1.1:443",
            "192.169.0.1:443",
            "198.17.255.255:443",
            "198.20.0.0:443",
            "223.255.255.255:443",
            "[2606:4700::1111]:443",
            "[64:ff9b::808:808]:443", // NAT64 of 8.8.8.8
            "[::ffff:8.8.8.8]:443",
            "[fec0::1]:443", // site-local, deprecated but not in the registry
        ];
        for addr in allowed {
            assert_eq!(refusal(&policy, addr), None, "{addr} should be allowed");
        }
    }

    #[test]
    fn the_rule_named_is_the_one_that_refused() {
        let policy = EgressPolicy::new()
            .deny_private()
            .deny_cidr("127.0.0.0/8".parse().unwrap())
            .allow_cidr("127.0.0.5/32".parse().unwrap());
        assert_eq!(
            refusal(&policy, "127.0.0.1:4567").unwrap(),
            "refused by --deny-cidr 127.0.0.0/8: 127.0.0.1:4567"
        );
        assert_eq!(
            refusal(&policy, "[::ffff:127.0.0.1]:4567").unwrap(),
            "refused by --deny-cidr 127.0.0.0/8: [::ffff:127.0.0.1]:4567"
        );
        assert_eq!(
            refusal(&policy, "10.0.0.1:80").unwrap(),
            "refused by --deny-private (private-use 10.0.0.0/8): 10.0.0.1:80"
        );
        assert_eq!(refusal(&policy, "127.0.0.5:4567"), None);
        assert_eq!(refusal(&policy, "[::ffff:127.0.0.5]:4567"), None);
    }

    /// The reviewer's input: `http://0.0.0.0:9000/` reached a receiver on loopback through
    /// `--deny-cidr 127.0.0.0/8`, since a connection to the unspecified address goes to this
    /// host. It is refused by the rule that refuses loopback, for either family.
    #[test]
    fn the_unspecified_address_is_judged_as_loopback() {
        let policy = EgressPolicy::new().deny_cidr("127.0.0.0/8".parse().unwrap());
        assert_eq!(
            refusal(&policy, "0.0.0.0:9000").as_deref(),
            Some("refused by --deny-cidr 127.0.0.0/8: 0.0.0.0:9000")
        );
        assert_eq!(refusal(&policy, "[::]:9000"), None, "::1 is not denied");
        let both = policy.deny_cidr("::1/128".parse().unwrap());
        assert_eq!(
            refusal(&both, "[::]:9000").as_deref(),
            Some("refused by --deny-cidr ::1/128: [::]:9000")
        );
        let allowed = both.allow_cidr("127.0.0.1/32".parse().unwrap());
        assert_eq!(refusal(&allowed, "0.0.0.0:9000"), None);
    }

    #[test]
    fn deny_cidr_alone_leaves_the_rest() {
        let policy = EgressPolicy::new().deny_cidr("fd00::/8".parse().unwrap());
        assert!(refusal(&policy, "[fd00::1]:80").is_some());
        assert_eq!(refusal(&policy, "[fc00::1]:80"), None);
        assert_eq!(refusal(&policy, "127.0.0.1:80"), None);
    }
}
