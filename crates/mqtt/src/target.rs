//! What a request names: the broker, the topic and the credentials to connect with.

use std::fmt;

use base64::Engine as _;
use percent_encoding::percent_decode_str;

/// The default port of `mqtt://` (IANA).
pub(crate) const MQTT_PORT: u16 = 1883;
/// The default port of `mqtts://` (IANA).
pub(crate) const MQTTS_PORT: u16 = 8883;

/// A broker and a topic, read from an `mqtt://` or `mqtts://` URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) broker: Broker,
    pub(crate) topic: String,
}

/// Where to connect: one connection per broker is kept and reused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Broker {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Reads `mqtt://host[:port]/topic/levels` or `mqtts://…`: the path without its first `/`,
/// percent-decoded, is the topic. Refuses what cannot be published to: no topic, a wildcard
/// (`+`, `#`), a query, and credentials in the URL (they come from `Authorization`).
pub(crate) fn parse(text: &str) -> Result<Target, String> {
    let url = url::Url::parse(text).map_err(|e| format!("invalid URL: {e}"))?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        other => return Err(format!("URL scheme `{other}:` is not mqtt or mqtts")),
    };
    let host = match url.host() {
        Some(url::Host::Domain(name)) if !name.is_empty() => name.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err("URL has no host".into()),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "URL contains credentials, which are not used; give them as an Authorization header"
                .into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an MQTT URL has no query or fragment (`?`, `#`)".into());
    }
    let topic = percent_decode_str(url.path().strip_prefix('/').unwrap_or(url.path()))
        .decode_utf8()
        .map_err(|_| "the topic is not UTF-8 once percent-decoded".to_string())?
        .into_owned();
    if topic.is_empty() {
        return Err("no topic: the URL's path names it, as in mqtt://broker/lab/runs".into());
    }
    if topic.contains(['+', '#']) {
        return Err(format!(
            "topic `{topic}` holds a wildcard (`+` or `#`), which only subscribers use"
        ));
    }
    if topic.contains('\0') {
        return Err("the topic contains a NUL character".into());
    }
    let port = url
        .port()
        .unwrap_or(if tls { MQTTS_PORT } else { MQTT_PORT });
    Ok(Target {
        broker: Broker { host, port, tls },
        topic,
    })
}

/// A user name and password for the broker's CONNECT.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl Credentials {
    /// `user:password`, split at the first `:` (a user name holds none, as in HTTP Basic).
    pub(crate) fn from_pair(pair: &str) -> Option<Credentials> {
        let (user, password) = pair.split_once(':')?;
        Some(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// An `Authorization` header value: `Basic ` and base64 of `user:password` (RFC 7617).
    /// The error does not quote the value: it holds a secret.
    pub(crate) fn from_authorization(value: &str) -> Result<Credentials, String> {
        let (scheme, encoded) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(
                "the Authorization header of an MQTT hook must be `Basic` followed by \
                 base64 of `user:password`"
                    .into(),
            );
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| "the Authorization header's Basic credentials are not base64")?;
        let pair = String::from_utf8(decoded)
            .map_err(|_| "the Authorization header's Basic credentials are not UTF-8")?;
        Credentials::from_pair(&pair).ok_or_else(|| {
            "the Authorization header's Basic credentials have no `:` between user and password"
                .into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |text: &str, host: &str, port: u16, tls: bool, topic: &str| {
            assert_eq!(
                parse(text),
                Ok(Target {
                    broker: Broker {
                        host: host.into(),
                        port,
                        tls
                    },
                    topic: topic.into()
                }),
                "{text}"
            );
        };
        ok("mqtt://broker/lab/runs", "broker", 1883, false, "lab/runs");
        ok("mqtts://broker.lab:8884/a", "broker.lab", 8884, true, "a");
        ok("mqtts://broker/a/", "broker", 8883, true, "a/");
        ok(
            "mqtt://127.0.0.1:1884/x%20y",
            "127.0.0.1",
            1884,
            false,
            "x y",
        );
        ok("mqtt://[::1]:1884/x", "::1", 1884, false, "x");
        ok("MQTT://Broker/Lab", "Broker", 1883, false, "Lab");
        for (text, problem) in [
            ("mqtt://broker", "no topic"),
            ("mqtt://broker/", "no topic"),
            ("mqtt://broker/a/+", "wildcard"),
            ("mqtt://broker/a/%23", "wildcard"),
            ("mqtt://broker/a?x=1", "no query"),
            ("mqtt://broker/a#b", "no query"),
            ("mqtt://u:p@broker/a", "credentials"),
            ("mqtt:///a", "no host"),
            ("http://broker/a", "not mqtt"),
            ("mqtt://broker/%FF", "not UTF-8"),
            ("mqtt://broker/%00", "NUL"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(problem), "{text}: {err}");
        }
    }

    #[test]
    fn authorization() {
        // base64("lab:s3cret:x")
        let creds = Credentials::from_authorization("Basic bGFiOnMzY3JldDp4").unwrap();
        assert_eq!(
            (creds.user.as_str(), creds.password.as_str()),
            ("lab", "s3cret:x")
        );
        assert!(!format!("{creds:?}").contains("s3cret"));
        for bad in ["Bearer abc", "Basic !!!", "Basic bGFi", "", "Basic"] {
            let err = Credentials::from_authorization(bad).unwrap_err();
            assert!(!err.contains("bGFi"), "{err}");
        }
    }
}
