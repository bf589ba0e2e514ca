//! The signing secret, which never shows itself in output.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The documented prefix of a secret's text form.
const PREFIX: &str = "whsec_";

/// A signing secret: the key of the HMAC.
///
/// Its text form is `whsec_` followed by the key in standard base64 (with padding), as Standard
/// Webhooks documents it; like the specification's reference libraries, the bare base64 without
/// the prefix is accepted too. The specification recommends keys of 24 to 64 bytes; any
/// non-empty key is accepted so that existing secrets keep working.
///
/// `Debug` never shows the key, and there is no `Display`.
///
/// ```
/// use linq_hooks_signature::Secret;
///
/// let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
/// assert_eq!(format!("{secret:?}"), "Secret([redacted])");
///
/// assert!("whsec_not base64!".parse::<Secret>().is_err());
/// # Ok::<(), linq_hooks_signature::ParseSecretError>(())
/// ```
#[derive(Clone)]
pub struct Secret {
    key: Box<[u8]>,
}

impl Secret {
    /// A secret from the raw key bytes (not base64). Refuses an empty key.
    ///
    /// ```
    /// use linq_hooks_signature::Secret;
    ///
    /// let secret = Secret::from_bytes(*b"twenty-four random bytes")?;
    /// assert!(Secret::from_bytes(Vec::new()).is_err());
    /// # Ok::<(), linq_hooks_signature::ParseSecretError>(())
    /// ```
    pub fn from_bytes(key: impl Into<Vec<u8>>) -> Result<Secret, ParseSecretError> {
        let key = key.into();
        if key.is_empty() {
            return Err(ParseSecretError(Reason::Empty));
        }
        Ok(Secret { key: key.into() })
    }

    /// A new secret of 32 bytes from the operating system's random source (`getrandom`), as
    /// Standard Webhooks recommends (24 to 64 bytes). Needs the `sender` feature.
    ///
    /// # Errors
    ///
    /// When the operating system has no random source to give.
    ///
    /// ```
    /// use linq_hooks_signature::Secret;
    ///
    /// let a = Secret::generate()?;
    /// let b = Secret::generate()?;
    /// assert!(a.expose_whsec().starts_with("whsec_"));
    /// assert_ne!(a.expose_whsec(), b.expose_whsec());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(feature = "sender")]
    pub fn generate() -> Result<Secret, std::io::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        Ok(Secret { key: key.into() })
    }

    /// The secret's text form, `whsec_` and the key in standard base64: what a receiver is
    /// given to verify with. It exposes the key on purpose (to store it, or to hand it to the
    /// receiver's owner); everything else about a `Secret` keeps it hidden.
    ///
    /// ```
    /// use linq_hooks_signature::Secret;
    ///
    /// let secret: Secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse()?;
    /// assert_eq!(secret.expose_whsec(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    /// # Ok::<(), linq_hooks_signature::ParseSecretError>(())
    /// ```
    pub fn expose_whsec(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// HMAC-SHA256 of `{msg_id}.{timestamp}.{body}` under this key.
    pub(crate) fn tag(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl FromStr for Secret {
    type Err = ParseSecretError;

    fn from_str(text: &str) -> Result<Secret, ParseSecretError> {
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        // The decoder's own error names the offending byte and its offset: a piece of the
        // secret's text. It is dropped on purpose.
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| ParseSecretError(Reason::NotBase64))?;
        Secret::from_bytes(key)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Why a text or a key is not a usable [`Secret`]. Its message never quotes the secret.
///
/// ```
/// use linq_hooks_signature::Secret;
///
/// let err = "whsec_%%%".parse::<Secret>().unwrap_err();
/// assert_eq!(err.to_string(), "webhook secret is not `whsec_` followed by standard base64");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSecretError(Reason);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Reason {
    NotBase64,
    Empty,
}

impl fmt::Display for ParseSecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Reason::NotBase64 => "webhook secret is not `whsec_` followed by standard base64",
            Reason::Empty => "webhook secret is empty",
        })
    }
}

impl std::error::Error for ParseSecretError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_optional() {
        let with: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let without: Secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        assert_eq!(with.key, without.key);
        assert_eq!(with.key.len(), 24);
    }

    #[test]
    fn refused_texts() {
        for text in [
            "",
            "whsec_",
            "whsec_abc",
            "whsec_ MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(text.parse::<Secret>().is_err(), "{text:?}");
        }
        assert_eq!(
            "whsec_".parse::<Secret>().unwrap_err().to_string(),
            "webhook secret is empty"
        );
    }

    #[test]
    fn debug_is_redacted() {
        let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let shown = format!("{secret:?} {secret:#?} {:?}", [&secret]);
        assert!(!shown.contains("MfKQ"), "{shown}");
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
    }
}
