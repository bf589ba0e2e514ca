//! HTTPS with a lab's own CA, trusted through `extra_root_pem`.

use std::sync::Arc;

use linq_hooks_http::HttpTransport;
use linq_hooks_transport::{Request, Transport};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::util::{chain, response, serve_tls};

/// A test CA and a server certificate it signed for `names`.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

pub(crate) fn pki(names: &[&str]) -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "linq-hooks test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = CertificateParams::new(names).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();

    Pki {
        ca_pem: ca_cert.pem(),
        server_chain: vec![leaf_cert.der().clone()],
        server_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    }
}

pub(crate) fn server_config(pki: &Pki, alpn: &[&[u8]]) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

fn version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        _ => "other",
    }
}

#[tokio::test]
async fn a_server_signed_by_an_extra_ca_is_trusted_and_speaks_http2() {
    let pki = pki(&["127.0.0.1"]);
    let server = serve_tls(
        server_config(&pki, &[b"h2", b"http/1.1"]),
        |request| async move { response(200, version_name(request.version)) },
    )
    .await;
    let transport = HttpTransport::builder()
        .extra_root_pem(pki.ca_pem.as_bytes())
        .build()
        .unwrap();

    for _ in 0..3 {
        let answer = transport
            .send(Request::new(server.url("/hook"), "{}"))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.body().as_ref(), b"HTTP/2");
    }
    let received = server.requests();
    assert_eq!(received.len(), 3);
    assert_eq!(received[0].body.as_ref(), b"{}");
    // HTTP/2 multiplexes every request over the one connection.
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_server_without_http2_gets_http1() {
    let pki = pki(&["127.0.0.1"]);
    let server = serve_tls(server_config(&pki, &[b"http/1.1"]), |request| async move {
        response(200, version_name(request.version))
    })
    .await;
    let transport = HttpTransport::builder()
        .extra_root_pem(pki.ca_pem.as_bytes())
        .build()
        .unwrap();
    let answer = transport
        .send(Request::new(server.url("/"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.body().as_ref(), b"HTTP/1.1");
}

#[tokio::test]
async fn an_unknown_ca_is_refused_as_a_tls_error() {
    let pki = pki(&["127.0.0.1"]);
    let server = serve_tls(server_config(&pki, &[b"h2", b"http/1.1"]), |_| async {
        response(200, "")
    })
    .await;
    let transport = HttpTransport::new().unwrap();
    let err = transport
        .send(Request::new(server.url("/"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert!(!err.is_connect() && !err.is_timeout(), "{err:?}");
    let chain = chain(&err);
    assert!(chain.contains("UnknownIssuer"), "{chain}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let pki = pki(&["lims.example"]);
    let server = serve_tls(server_config(&pki, &[b"http/1.1"]), |_| async {
        response(200, "")
    })
    .await;
    let transport = HttpTransport::builder()
        .extra_root_pem(pki.ca_pem.as_bytes())
        .build()
        .unwrap();
    let err = transport
        .send(Request::new(server.url("/"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn plain_http_to_an_https_server_is_an_error() {
    let pki = pki(&["127.0.0.1"]);
    let server = serve_tls(server_config(&pki, &[b"http/1.1"]), |_| async {
        response(200, "")
    })
    .await;
    let transport = HttpTransport::new().unwrap();
    let url = server.url("/").replacen("https", "http", 1);
    assert!(transport.send(Request::new(url, "{}")).await.is_err());
    assert!(server.requests().is_empty());
}

#[test]
fn a_bad_extra_ca_bundle_is_a_clear_build_error() {
    let err = HttpTransport::builder()
        .extra_root_pem(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
        .build()
        .unwrap_err();
    assert!(err.is_invalid_pem());
    assert!(err.to_string().starts_with("extra CA bundle #1: "), "{err}");

    let good = pki(&["127.0.0.1"]).ca_pem;
    let err = HttpTransport::builder()
        .extra_root_pem(good.as_bytes())
        .extra_root_pem(b"# nothing here\n")
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "extra CA bundle #2: no certificate in it (expected -----BEGIN CERTIFICATE-----)"
    );
}
