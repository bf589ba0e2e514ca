//! The checks that go beyond the LINQ API: a hook must be deliverable.
//!
//! The API accepts any string as a URL and any header; such a hook would only fail later, at
//! delivery, where nobody sees it. These checks refuse it when it is written.

use crate::error::Diagnostic;
use crate::parse::Path;

/// Headers the delivery itself sets; a hook may not override them (compared case-insensitively).
pub(crate) const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// The URL schemes a hook may use: those of the transports built in (HTTP: `http`, `https`;
/// MQTT: `mqtt`, `mqtts`).
///
/// ```
/// assert_eq!(linq_hooks_model::URL_SCHEMES, ["http", "https", "mqtt", "mqtts"]);
/// ```
pub const URL_SCHEMES: [&str; 4] = ["http", "https", "mqtt", "mqtts"];

/// A hook URL must be an absolute URL of one of [`URL_SCHEMES`] with a host; an MQTT URL must
/// name a topic a message can be published to.
pub(crate) fn url(url: &str, path: &Path, problems: &mut Vec<Diagnostic>) {
    if let Err(message) = url_problem(url) {
        problems.push(Diagnostic::new(path.to_string(), message));
    }
}

fn url_problem(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("URL is empty".into());
    }
    // The WHATWG parser quietly trims or percent-encodes these; an HTTP client does not.
    if let Some(c) = text.chars().find(|c| c.is_whitespace()) {
        return Err(format!("URL contains whitespace ({})", c.escape_unicode()));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "URL contains a control character ({})",
            c.escape_unicode()
        ));
    }
    let parsed = match url::Url::parse(text) {
        Ok(parsed) => parsed,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Err("relative URL without a scheme".into());
        }
        Err(url::ParseError::EmptyHost) => return Err("URL has no host".into()),
        Err(e) => return Err(format!("invalid URL: {e}")),
    };
    let scheme = parsed.scheme();
    if !URL_SCHEMES.contains(&scheme) {
        return Err(format!(
            "unsupported URL scheme `{scheme}:`; hook URLs are {}",
            URL_SCHEMES.map(|s| format!("{s}://")).join(", ")
        ));
    }
    // `http:example.com` and `http:\\example.com` parse in a browser, not in an HTTP client.
    let after_scheme = &text[scheme.len() + 1..];
    if !after_scheme.starts_with("//") {
        return Err(format!("expected `//` after `{scheme}:`"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("URL has no host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "URL contains credentials, which are not sent; use an Authorization header instead"
                .into(),
        );
    }
    if scheme.starts_with("mqtt") {
        return mqtt_topic_problem(&parsed);
    }
    Ok(())
}

/// An MQTT URL's path is the topic (percent-decoded): there must be one, without the
/// wildcards only subscribers use; a query or fragment would be lost.
fn mqtt_topic_problem(url: &url::Url) -> Result<(), String> {
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an MQTT URL has no query or fragment (`?`, `#`)".into());
    }
    let path = url.path().strip_prefix('/').unwrap_or(url.path());
    if path.is_empty() {
        return Err("no MQTT topic: the URL's path names it, as in mqtt://broker/lab/runs".into());
    }
    let decoded = percent_decode(path)
        .ok_or("the MQTT topic is not UTF-8 once percent-decoded (`%` escapes)")?;
    if decoded.contains(['+', '#']) {
        return Err(format!(
            "MQTT topic `{decoded}` holds a wildcard (`+` or `#`), which only subscribers use"
        ));
    }
    if decoded.contains('\0') {
        return Err("the MQTT topic contains a NUL character".into());
    }
    Ok(())
}

/// `%XX` escapes decoded, as the MQTT transport decodes the topic; `None` if the result is not
/// UTF-8. A `%` without two hex digits stays as it is.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A header must have a token name that the delivery does not own, and a value of visible
/// US-ASCII, spaces and tabs: no control characters (CR or LF in a value would let it inject
/// headers), nothing beyond ASCII (receivers garble it).
pub(crate) fn header(name: &str, value: &str, path: &Path, problems: &mut Vec<Diagnostic>) {
    let mut push = |message: String| problems.push(Diagnostic::new(path.to_string(), message));
    if name.is_empty() {
        push("header name is empty".into());
    } else if let Some(c) = name.chars().find(|&c| !is_tchar(c)) {
        push(format!(
            "header name is not a valid HTTP token (it contains {})",
            describe_char(c)
        ));
    } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        push(format!(
            "header `{name}` is set by the delivery itself and cannot be set by a hook"
        ));
    }
    if value.contains(['\r', '\n']) {
        push("header value contains a line break (CR or LF), which would inject headers".into());
    } else if value.contains('\0') {
        push("header value contains a NUL character".into());
    } else if let Some(c) = value.chars().find(|&c| c.is_ascii_control() && c != '\t') {
        push(format!(
            "header value contains a control character ({})",
            c.escape_unicode()
        ));
    } else if let Some((position, c)) = value.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
        // RFC 9110 §5.5 leaves bytes outside US-ASCII "opaque data": receivers read them as
        // Latin-1 (`Zürich` arrives as `ZÃ¼rich`) or refuse them, and a pasted typographic
        // character in a token never matches. Stricter than the LINQ API on purpose.
        push(format!(
            "header value contains {} ({c}) at character {}; header values must be visible \
             US-ASCII (receivers garble or refuse anything else)",
            c.escape_unicode(),
            position + 1
        ));
    }
}

/// `tchar` from RFC 9110, section 5.6.2.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        c if c.is_control() || !c.is_ascii() => format!("{}", c.escape_unicode()),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_check(text: &str) -> Result<(), String> {
        url_problem(text)
    }

    fn header_check(name: &str, value: &str) -> Vec<String> {
        let mut problems = Vec::new();
        header(name, value, &Path::root(), &mut problems);
        problems
            .into_iter()
            .map(|p| p.message().to_string())
            .collect()
    }

    #[test]
    fn urls() {
        let cases: &[(&str, Option<&str>)] = &[
            ("https://example.com", None),
            ("http://[::1]:8080/%E2%9C%93", None),
            ("https://xn--bcher-kva.example:8080/a/b?x=1&y=2", None),
            ("https://example.com/p#frag", None),
            ("HTTPS://EXAMPLE.COM/", None),
            ("", Some("URL is empty")),
            ("/hooks", Some("relative URL without a scheme")),
            ("example.com/hooks", Some("relative URL without a scheme")),
            ("mqtt://broker.lab/lab/runs", None),
            ("mqtts://broker.lab:8884/a%20b/c", None),
            ("mqtt://[::1]:1884/x", None),
            (
                "ftp://example.com",
                Some(
                    "unsupported URL scheme `ftp:`; hook URLs are http://, https://, mqtt://, mqtts://",
                ),
            ),
            ("mqtt://broker.lab", Some("no MQTT topic")),
            ("mqtt://broker.lab/", Some("no MQTT topic")),
            (
                "mqtt://broker.lab/a/+",
                Some("MQTT topic `a/+` holds a wildcard"),
            ),
            (
                "mqtt://broker.lab/a/%23",
                Some("MQTT topic `a/#` holds a wildcard"),
            ),
            ("mqtt://broker.lab/a#b", Some("an MQTT URL has no query")),
            ("mqtt://broker.lab/a?x=1", Some("an MQTT URL has no query")),
            ("mqtt://broker.lab/%FF", Some("the MQTT topic is not UTF-8")),
            (
                "mqtt://broker.lab/%00",
                Some("the MQTT topic contains a NUL"),
            ),
            ("mqtt://u:p@broker.lab/a", Some("URL contains credentials")),
            ("mqtt:///a", Some("URL has no host")),
            ("mqtt:broker/a", Some("expected `//` after `mqtt:`")),
            (
                "javascript:alert(1)",
                Some("unsupported URL scheme `javascript:`"),
            ),
            (
                "mailto:lab@example.com",
                Some("unsupported URL scheme `mailto:`"),
            ),
            ("http://", Some("URL has no host")),
            ("https://", Some("URL has no host")),
            ("http:example.com", Some("expected `//` after `http:`")),
            ("http://exa mple.com", Some("URL contains whitespace")),
            ("http://example.com/a b", Some("URL contains whitespace")),
            (" http://example.com", Some("URL contains whitespace")),
            (
                "http://example.com/\u{7}",
                Some("URL contains a control character"),
            ),
            (
                "http://user:pw@example.com",
                Some("URL contains credentials"),
            ),
            (
                "http://example.com:99999",
                Some("invalid URL: invalid port number"),
            ),
        ];
        for (text, expected) in cases {
            match (url_check(text), expected) {
                (Ok(()), None) => {}
                (Err(message), Some(prefix)) if message.starts_with(prefix) => {}
                (got, _) => panic!("{text:?}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn headers() {
        assert!(header_check("X-Api-Key", "Bearer abc.def").is_empty());
        assert!(header_check("Authorization", "").is_empty());
        assert!(header_check("Content-Type", "application/json").is_empty());
        assert!(header_check("User-Agent", "lab/1.0").is_empty());
        assert!(header_check("x-trace", "a\ttab").is_empty());
        // The field fault: `Zürich` went out as raw UTF-8 and arrived as `ZÃ¼rich`.
        assert_eq!(
            header_check("X-Lab-Site", "Zürich"),
            [
                "header value contains \\u{fc} (ü) at character 2; header values must be visible \
              US-ASCII (receivers garble or refuse anything else)"
            ]
        );
        // A typographic character pasted into a token.
        assert_eq!(
            header_check("Authorization", "Bearer abc\u{2019}d")[0]
                .split(';')
                .next()
                .unwrap(),
            "header value contains \\u{2019} (\u{2019}) at character 11"
        );
        assert_eq!(header_check("", "x"), ["header name is empty"]);
        assert_eq!(
            header_check("X Y", "x"),
            ["header name is not a valid HTTP token (it contains a space)"]
        );
        assert_eq!(
            header_check("X:Y", "x"),
            ["header name is not a valid HTTP token (it contains `:`)"]
        );
        assert_eq!(
            header_check("Tést", "x"),
            ["header name is not a valid HTTP token (it contains \\u{e9})"]
        );
        for reserved in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "CONNECTION",
            "webhook-id",
            "Webhook-Timestamp",
            "webhook-signature",
        ] {
            let problems = header_check(reserved, "x");
            assert_eq!(problems.len(), 1, "{reserved}");
            assert!(
                problems[0].contains("set by the delivery itself"),
                "{reserved}"
            );
        }
        assert_eq!(
            header_check("X-A", "a\r\nX-Injected: 1"),
            ["header value contains a line break (CR or LF), which would inject headers"]
        );
        assert_eq!(header_check("X-A", "a\nb").len(), 1);
        assert_eq!(
            header_check("X-A", "a\0b"),
            ["header value contains a NUL character"]
        );
        assert_eq!(
            header_check("X-A", "a\u{1b}b"),
            ["header value contains a control character (\\u{1b})"]
        );
        // Both the name and the value are reported.
        assert_eq!(header_check("Host", "a\nb").len(), 2);
    }
}
