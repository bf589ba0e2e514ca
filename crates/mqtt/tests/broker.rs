//! The MQTT transport against a real broker: mosquitto on a free port of 127.0.0.1, started by
//! each test (`linq_hooks_tests::Mosquitto`), with a rumqttc subscriber where a test needs one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use linq_hooks_mqtt::MqttTransport;
use linq_hooks_signature::{Secret, Verifier, WebhookHeaders, sign};
use linq_hooks_tests::Mosquitto;
use linq_hooks_transport::{Request, Transport};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A subscriber to `topic` with QoS 1; returns once the broker has acknowledged the
/// subscription, with the publishes it receives.
async fn subscribe(broker: &Mosquitto, topic: &str) -> mpsc::UnboundedReceiver<Publish> {
    let options = MqttOptions::new(format!("sub-{}", fastrand_id()), "127.0.0.1", broker.port());
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client; // kept alive as long as the loop runs
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(publish)) => {
                    let _ = tx.send(publish);
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), subscribed)
        .await
        .expect("the broker acknowledges the subscription")
        .unwrap();
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Publish>) -> Publish {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a publish arrives within 20 s")
        .expect("the subscriber runs")
}

fn fastrand_id() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn transport() -> MqttTransport {
    MqttTransport::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A signed request, as the dispatcher makes it.
fn signed(url: &str, body: &str, id: &str) -> Request {
    let secret: Secret = SECRET.parse().unwrap();
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Request::new(url, body.to_string())
        .with_header("X-Lab", "north")
        .with_header("webhook-id", id)
        .with_header("webhook-timestamp", timestamp.to_string())
        .with_header(
            "webhook-signature",
            sign(&[secret], id, timestamp, body.as_bytes()),
        )
}

fn property<'a>(publish: &'a Publish, name: &str) -> Option<&'a str> {
    publish
        .properties
        .as_ref()?
        .user_properties
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_body_is_the_payload_and_headers_are_user_properties_that_verify() {
    let broker = Mosquitto::start();
    let mut received = subscribe(&broker, "lab/runs").await;
    let transport = transport();
    let body = r#"{"event":"new_plan","plan_id":"p1"}"#;
    let response = transport
        .send(signed(&broker.url("lab/runs"), body, "msg_1"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{response:?}");

    let publish = next(&mut received).await;
    assert_eq!(publish.payload.as_ref(), body.as_bytes());
    assert_eq!(publish.topic.as_ref(), b"lab/runs");
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    let properties = publish.properties.as_ref().unwrap();
    assert_eq!(properties.content_type.as_deref(), Some("application/json"));
    assert_eq!(properties.payload_format_indicator, Some(1));
    let names: Vec<_> = properties
        .user_properties
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "x-lab",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature"
        ]
    );
    assert_eq!(property(&publish, "x-lab"), Some("north"));

    // A subscriber verifies exactly as an HTTP receiver does.
    let headers = WebhookHeaders::new(
        property(&publish, "webhook-id").unwrap(),
        property(&publish, "webhook-timestamp").unwrap(),
        property(&publish, "webhook-signature").unwrap(),
    );
    let verifier = Verifier::new([SECRET.parse::<Secret>().unwrap()]);
    verifier.verify(headers, &publish.payload).unwrap();
    let other = Verifier::new([Secret::generate().unwrap()]);
    assert!(other.verify(headers, &publish.payload).is_err());
}

#[tokio::test]
async fn content_type_and_authorization_headers_are_not_user_properties() {
    let broker = Mosquitto::start();
    let mut received = subscribe(&broker, "t").await;
    let request = Request::new(broker.url("t"), "plain")
        .with_header("Content-Type", "text/plain")
        .with_header("Authorization", "Basic bGFiOnMzY3JldA==") // lab:s3cret
        .with_header("X-A", "1");
    assert!(transport().send(request).await.unwrap().is_success());
    let publish = next(&mut received).await;
    let properties = publish.properties.as_ref().unwrap();
    assert_eq!(properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(properties.user_properties, [("x-a".into(), "1".into())]);
}

#[tokio::test]
async fn publishes_on_one_connection_arrive_in_order_and_concurrent_ones_are_each_acknowledged() {
    let broker = Mosquitto::start();
    let mut received = subscribe(&broker, "order").await;
    let transport = transport();
    for n in 0..50 {
        let response = transport
            .send(Request::new(broker.url("order"), format!("{n}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for n in 0..50 {
        assert_eq!(
            next(&mut received).await.payload.as_ref(),
            format!("{n}").as_bytes()
        );
    }
    // Concurrent publishes: each gets its own PUBACK.
    let sends = (0..40).map(|n| {
        let transport = transport.clone();
        let url = broker.url("order");
        tokio::spawn(async move { transport.send(Request::new(url, format!("c{n}"))).await })
    });
    for send in sends {
        assert_eq!(send.await.unwrap().unwrap().status(), 200);
    }
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..40 {
        seen.push(String::from_utf8(next(&mut received).await.payload.to_vec()).unwrap());
    }
    seen.sort();
    let mut expected: Vec<String> = (0..40).map(|n| format!("c{n}")).collect();
    expected.sort();
    assert_eq!(seen, expected);
    // All of it over one connection.
    assert!(
        format!("{transport:?}").contains("connections: 1"),
        "{transport:?}"
    );
}

#[tokio::test]
async fn no_subscriber_is_accepted_with_202() {
    let broker = Mosquitto::start();
    let response = transport()
        .send(Request::new(broker.url("nobody/listens"), "{}"))
        .await
        .unwrap();
    assert!(response.is_success(), "{response:?}");
    assert!(
        [200, 202].contains(&response.status()),
        "{}",
        response.status()
    );
}

#[tokio::test]
async fn a_broker_that_is_down_is_a_connect_error_and_the_next_publish_reconnects() {
    let mut broker = Mosquitto::start();
    let transport = transport();
    let url = broker.url("t");
    assert!(
        transport
            .send(Request::new(&url, "1"))
            .await
            .unwrap()
            .is_success()
    );

    broker.stop();
    let err = transport.send(Request::new(&url, "2")).await.unwrap_err();
    assert!(err.is_connect(), "{err:#}");
    assert!(
        format!("{err:#}").contains(&format!("127.0.0.1:{}", broker.port())),
        "{err:#}"
    );

    broker.restart();
    let mut received = subscribe(&broker, "t").await;
    assert!(
        transport
            .send(Request::new(&url, "3"))
            .await
            .unwrap()
            .is_success()
    );
    assert_eq!(next(&mut received).await.payload.as_ref(), b"3");
}

#[tokio::test]
async fn no_puback_in_time_is_a_timeout() {
    // A "broker" that accepts the connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut streams = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            streams.push(stream);
        }
    });
    let transport = MqttTransport::builder()
        .timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let err = transport
        .send(Request::new(format!("mqtt://127.0.0.1:{port}/t"), "{}"))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:#}");
    held.abort();
}

#[tokio::test]
async fn credentials_come_from_authorization_or_the_builder_never_the_url() {
    let broker = Mosquitto::start_authenticated(&[("lab", "s3cret")], "");
    let url = broker.url("secure");
    let basic = |pair: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };

    let anonymous = transport().send(Request::new(&url, "{}")).await.unwrap();
    assert!([401, 403].contains(&anonymous.status()), "{anonymous:?}");
    assert!(String::from_utf8_lossy(anonymous.body()).contains("CONNACK"));

    let wrong = transport()
        .send(Request::new(&url, "{}").with_header("Authorization", basic("lab:nope")))
        .await
        .unwrap();
    assert!([401, 403].contains(&wrong.status()), "{wrong:?}");

    let right = transport()
        .send(Request::new(&url, "{}").with_header("Authorization", basic("lab:s3cret")))
        .await
        .unwrap();
    assert_eq!(right.status(), 202, "{right:?}"); // nobody subscribed

    let configured = MqttTransport::builder()
        .credentials("lab", "s3cret")
        .build()
        .unwrap();
    assert!(
        configured
            .send(Request::new(&url, "{}"))
            .await
            .unwrap()
            .is_success()
    );
    // The request's header wins over the builder's credentials.
    let overridden = configured
        .send(Request::new(&url, "{}").with_header("Authorization", basic("lab:nope")))
        .await
        .unwrap();
    assert!(!overridden.is_success());

    let in_url = format!("mqtt://lab:s3cret@127.0.0.1:{}/secure", broker.port());
    let err = configured
        .send(Request::new(in_url, "{}"))
        .await
        .unwrap_err();
    assert!(err.is_invalid_request(), "{err:#}");
    let bearer = configured
        .send(Request::new(&url, "{}").with_header("Authorization", "Bearer abc"))
        .await
        .unwrap_err();
    assert!(bearer.is_invalid_request(), "{bearer:#}");
    assert!(!format!("{bearer:#}").contains("abc"));
}

/// The egress policy applies to brokers as it does to HTTP receivers: a broker whose address a
/// rule refuses gets nothing, whether named by address or by a name that resolves to it, and
/// the refusal names the rule; a rule that allows it lets the publish through.
#[tokio::test]
async fn the_egress_policy_refuses_a_broker_naming_the_rule() {
    use linq_hooks_transport::EgressPolicy;

    let broker = Mosquitto::start();
    let mut received = subscribe(&broker, "t").await;
    // `localhost` may resolve to ::1 before 127.0.0.1: both are refused.
    let deny_loopback = || {
        EgressPolicy::new()
            .deny_cidr("127.0.0.0/8".parse().unwrap())
            .deny_cidr("::1/128".parse().unwrap())
    };
    let denied = MqttTransport::builder()
        .timeout(Duration::from_secs(10))
        .egress(deny_loopback())
        .build()
        .unwrap();
    let by_name = format!("mqtt://localhost:{}/t", broker.port());
    for url in [broker.url("t"), by_name.clone()] {
        let err = denied.send(Request::new(&url, "no")).await.unwrap_err();
        assert!(err.is_refused(), "{url}: {err:#}");
        let text = format!("{err:#}");
        let port = broker.port();
        assert!(
            text == format!(
                "blocked by the egress policy: refused by --deny-cidr 127.0.0.0/8: 127.0.0.1:{port}"
            ) || text
                == format!(
                    "blocked by the egress policy: refused by --deny-cidr ::1/128: [::1]:{port}"
                ),
            "{url}: {text}"
        );
    }

    let allowed = MqttTransport::builder()
        .timeout(Duration::from_secs(10))
        .egress(deny_loopback().allow_cidr("127.0.0.1/32".parse().unwrap()))
        .build()
        .unwrap();
    let response = allowed.send(Request::new(&by_name, "yes")).await.unwrap();
    assert!(response.is_success());
    // Only the allowed publish reached the broker.
    assert_eq!(next(&mut received).await.payload.as_ref(), b"yes");
}

/// A test CA and a certificate it signed for `localhost`, as PEM: (CA, server certificate,
/// server key).
fn test_pki() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "linq-hooks test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// `mqtts://`: TLS to a real broker (mosquitto's listener with a certificate from a lab's own
/// CA), trusted through `extra_root_pem` as the HTTP transport trusts it; without that CA the
/// handshake fails as a TLS error and nothing is published.
#[tokio::test]
async fn mqtts_goes_over_tls_trusting_an_extra_ca() {
    let (ca, cert, key) = test_pki();
    let dir = std::env::temp_dir().join(format!("linq-hooks-mqtts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, pem) in [("ca.pem", &ca), ("cert.pem", &cert), ("key.pem", &key)] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    let d = dir.display();
    let broker = Mosquitto::start_with(&format!(
        "certfile {d}/cert.pem\nkeyfile {d}/key.pem\ncafile {d}/ca.pem"
    ));
    let url = format!("mqtts://localhost:{}/lab/runs", broker.port());

    let trusting = MqttTransport::builder()
        .timeout(Duration::from_secs(10))
        .extra_root_pem(ca.as_bytes())
        .build()
        .unwrap();
    let response = trusting
        .send(signed(&url, r#"{"n":1}"#, "msg_tls"))
        .await
        .unwrap();
    // The broker's PUBACK came over TLS: nobody is subscribed, so "accepted".
    assert_eq!(response.status(), 202);

    let err = transport()
        .send(Request::new(&url, r#"{"n":2}"#))
        .await
        .unwrap_err();
    assert!(err.is_tls(), "{err:#}");
}
