//! Sorting hyper's errors into the transport's kinds.

use std::error::Error as StdError;

use linq_hooks_transport::Error;

/// The transport error for an error of hyper-util's client, which it keeps as the source.
///
/// A TLS failure is reported by the connector as a connect error whose cause is an
/// `io::Error` wrapping a `rustls::Error`; it is told apart so that a certificate problem is
/// [`is_tls`](Error::is_tls), not a generic connect failure.
///
/// A refusal by the egress policy is [`is_refused`](Error::is_refused), with the
/// [`Refused`](crate::Refused) (rule and address) as its source.
pub(crate) fn from_client(err: hyper_util::client::legacy::Error) -> Error {
    if let Some(refused) = crate::connect::find_refused(&err) {
        Error::refused(refused.clone())
    } else if chain_has_rustls_error(&err) {
        Error::tls(err)
    } else if err.is_connect() {
        Error::connect(err)
    } else {
        Error::other(err)
    }
}

fn chain_has_rustls_error(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps (the connector nests them two deep), so
        // step into it instead.
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => err.source(),
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connect")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn finds_rustls_inside_io_errors() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(chain_has_rustls_error(&Wrapper(tls)));
        let nested = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(chain_has_rustls_error(&Wrapper(nested)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!chain_has_rustls_error(&Wrapper(refused)));
    }
}
