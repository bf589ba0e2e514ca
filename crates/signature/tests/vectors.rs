//! The published Standard Webhooks vectors, and the receiver's refusals.

use std::time::Duration;

use linq_hooks_signature::{Secret, Verifier, WebhookHeaders, new_message_id, sign};

struct Vector {
    secret: &'static str,
    id: &'static str,
    timestamp: i64,
    body: &'static [u8],
    signature: &'static str,
}

const VECTORS: [Vector; 2] = [
    Vector {
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp: 1614265330,
        body: br#"{"test": 2432232314}"#,
        signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    },
    Vector {
        secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        timestamp: 1649367553,
        body: br#"{"email":"test@example.com","username":"test_user"}"#,
        signature: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    },
];

/// A signature published as one that must not verify for the second vector.
const WRONG_SIGNATURE: &str = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=";

fn secret(text: &str) -> Secret {
    text.parse().unwrap()
}

fn check(vector: &Vector, signature: &str, now: i64) -> Result<(), linq_hooks_signature::Error> {
    let timestamp = vector.timestamp.to_string();
    Verifier::new([secret(vector.secret)]).verify_at(
        WebhookHeaders::new(vector.id, &timestamp, signature),
        vector.body,
        now,
    )
}

#[test]
fn published_vectors_sign() {
    for v in &VECTORS {
        assert_eq!(
            sign(&[secret(v.secret)], v.id, v.timestamp, v.body),
            v.signature
        );
    }
}

#[test]
fn published_vectors_verify() {
    for v in &VECTORS {
        check(v, v.signature, v.timestamp).unwrap();
    }
}

#[test]
fn published_wrong_signature_is_refused() {
    let err = check(&VECTORS[1], WRONG_SIGNATURE, VECTORS[1].timestamp).unwrap_err();
    assert!(err.is_bad_signature(), "{err}");
}

#[test]
fn one_good_signature_among_several_is_enough() {
    let v = &VECTORS[1];
    let others = [
        "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=",
        WRONG_SIGNATURE,
        "v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=",
    ];
    let header = format!("{} {} {} {}", others[0], others[1], v.signature, others[2]);
    check(v, &header, v.timestamp).unwrap();

    let header = others.join(" ");
    assert!(
        check(v, &header, v.timestamp)
            .unwrap_err()
            .is_bad_signature()
    );
}

#[test]
fn other_versions_are_skipped_not_errors() {
    let v = &VECTORS[0];
    let encoded = v.signature.strip_prefix("v1,").unwrap();
    // The right bytes under another version do not count...
    let err = check(v, &format!("v1a,{encoded} v2,{encoded}"), v.timestamp).unwrap_err();
    assert!(err.is_bad_signature(), "{err}");
    // ...and do not stop a good v1 signature from counting; nor does garbage.
    let header = format!("v1a,{encoded} v1,not-base64! nonsense {}", v.signature);
    check(v, &header, v.timestamp).unwrap();
}

#[test]
fn rotation_either_secret_verifies() {
    let (old, new) = (secret(VECTORS[0].secret), secret(VECTORS[1].secret));
    let signature = sign(&[old.clone(), new.clone()], "msg_rot", 1_700_000_000, b"{}");
    assert_eq!(signature.split(' ').count(), 2);
    let headers = WebhookHeaders::new("msg_rot", "1700000000", &signature);
    for receiver in [
        Verifier::new([old.clone()]),
        Verifier::new([new.clone()]),
        Verifier::new([new.clone(), old.clone()]),
    ] {
        receiver.verify_at(headers, b"{}", 1_700_000_000).unwrap();
    }

    // A receiver that already moved to both secrets accepts a sender still on the old one.
    let old_only = sign(std::slice::from_ref(&old), "msg_rot", 1_700_000_000, b"{}");
    Verifier::new([new, old])
        .verify_at(
            WebhookHeaders::new("msg_rot", "1700000000", &old_only),
            b"{}",
            1_700_000_000,
        )
        .unwrap();

    let stranger = Secret::from_bytes(*b"some other secret of ours").unwrap();
    let err = Verifier::new([stranger])
        .verify_at(headers, b"{}", 1_700_000_000)
        .unwrap_err();
    assert!(err.is_bad_signature());
}

#[test]
fn timestamps_outside_the_tolerance_are_stale() {
    let v = &VECTORS[0];
    let t = v.timestamp;
    for now in [t - 300, t + 300] {
        check(v, v.signature, now).unwrap();
    }
    for now in [t - 301, t + 301, t + 86_400, i64::MIN, i64::MAX] {
        let err = check(v, v.signature, now).unwrap_err();
        assert!(err.is_stale_timestamp(), "now = {now}: {err}");
    }
    assert_eq!(
        check(v, v.signature, t + 400).unwrap_err().to_string(),
        "webhook timestamp is 400 s in the past (tolerance 300 s)"
    );
    assert_eq!(
        check(v, v.signature, t - 400).unwrap_err().to_string(),
        "webhook timestamp is 400 s in the future (tolerance 300 s)"
    );

    let strict = Verifier::new([secret(v.secret)]).tolerance(Duration::from_secs(10));
    let ts = t.to_string();
    let headers = WebhookHeaders::new(v.id, &ts, v.signature);
    strict.verify_at(headers, v.body, t + 10).unwrap();
    assert!(
        strict
            .verify_at(headers, v.body, t + 11)
            .unwrap_err()
            .is_stale_timestamp()
    );
}

#[test]
fn stale_is_reported_before_a_bad_signature() {
    let v = &VECTORS[0];
    let err = check(v, "v1,AAAA", v.timestamp + 1000).unwrap_err();
    assert!(err.is_stale_timestamp());
}

#[test]
fn tampering_is_a_bad_signature() {
    let v = &VECTORS[1];
    let ts = v.timestamp.to_string();
    let verifier = Verifier::new([secret(v.secret)]);
    let cases: [(&str, &str, &[u8]); 3] = [
        (
            v.id,
            &ts,
            br#"{"email":"test@example.com","username":"test_user2"}"#,
        ),
        ("msg_27UH4WbU6Z5A5EzD8u03UvzRbpl", &ts, v.body),
        (v.id, "1649367554", v.body),
    ];
    for (id, timestamp, body) in cases {
        let err = verifier
            .verify_at(
                WebhookHeaders::new(id, timestamp, v.signature),
                body,
                v.timestamp,
            )
            .unwrap_err();
        assert!(err.is_bad_signature(), "{id} {timestamp}: {err}");
    }
}

#[test]
fn missing_and_invalid_headers() {
    let v = &VECTORS[0];
    let ts = v.timestamp.to_string();
    let full = WebhookHeaders::new(v.id, &ts, v.signature);
    let verifier = Verifier::new([secret(v.secret)]);
    let cases = [
        (WebhookHeaders { id: None, ..full }, "webhook-id"),
        (
            WebhookHeaders {
                timestamp: None,
                ..full
            },
            "webhook-timestamp",
        ),
        (
            WebhookHeaders {
                signature: None,
                ..full
            },
            "webhook-signature",
        ),
    ];
    for (headers, missing) in cases {
        let err = verifier
            .verify_at(headers, v.body, v.timestamp)
            .unwrap_err();
        assert!(err.is_missing_header(), "{err}");
        assert!(!err.is_invalid_header() && !err.is_bad_signature() && !err.is_stale_timestamp());
        assert_eq!(err.header(), Some(missing));
        assert_eq!(err.to_string(), format!("missing header `{missing}`"));
    }

    for timestamp in ["", "soon", "1614265330.5", "0x10", " 1614265330"] {
        let headers = WebhookHeaders {
            timestamp: Some(timestamp),
            ..full
        };
        let err = verifier
            .verify_at(headers, v.body, v.timestamp)
            .unwrap_err();
        assert!(err.is_invalid_header(), "{timestamp:?}: {err}");
        assert_eq!(err.header(), Some("webhook-timestamp"));
    }

    // An empty signature header holds no signature: a bad signature, not a missing header.
    let headers = WebhookHeaders {
        signature: Some(""),
        ..full
    };
    let err = verifier
        .verify_at(headers, v.body, v.timestamp)
        .unwrap_err();
    assert!(err.is_bad_signature());
}

#[test]
fn no_secrets_signs_nothing_and_verifies_nothing() {
    assert_eq!(sign(&[], "msg_1", 0, b""), "");
    let v = &VECTORS[0];
    let ts = v.timestamp.to_string();
    let err = Verifier::new([])
        .verify_at(
            WebhookHeaders::new(v.id, &ts, v.signature),
            v.body,
            v.timestamp,
        )
        .unwrap_err();
    assert!(err.is_bad_signature());
}

#[test]
fn system_clock_round_trip() {
    let secret = secret(VECTORS[0].secret);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let id = new_message_id();
    let signature = sign(std::slice::from_ref(&secret), &id, now, b"[]");
    let ts = now.to_string();
    Verifier::new([secret.clone()])
        .verify(WebhookHeaders::new(&id, &ts, &signature), b"[]")
        .unwrap();

    let old = (now - 3600).to_string();
    let signature = sign(std::slice::from_ref(&secret), &id, now - 3600, b"[]");
    let err = Verifier::new([secret])
        .verify(WebhookHeaders::new(&id, &old, &signature), b"[]")
        .unwrap_err();
    assert!(err.is_stale_timestamp());
}

#[test]
fn message_ids_are_unique() {
    let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_message_id()).collect();
    assert_eq!(ids.len(), 1000);
    assert!(
        ids.iter()
            .all(|id| id.starts_with("msg_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit()))
    );
}

#[test]
fn secrets_do_not_leak_through_debug() {
    let secret = secret(VECTORS[0].secret);
    let verifier = Verifier::new([secret.clone()]);
    for shown in [
        format!("{secret:?}"),
        format!("{verifier:?}"),
        format!("{verifier:#?}"),
    ] {
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains("MfKQ"), "{shown}");
    }
}

#[test]
fn present_but_not_visible_ascii_is_invalid_not_missing() {
    let secret = secret(VECTORS[0].secret);
    let verifier = Verifier::new([secret]);
    let check = |headers: WebhookHeaders<'_>, header: &str| {
        let err = verifier.verify_at(headers, b"{}", 0).unwrap_err();
        assert!(err.is_invalid_header(), "{headers:?}: {err}");
        assert!(!err.is_missing_header());
        assert_eq!(err.header(), Some(header));
    };
    // Text that is not ASCII, through `from_fn`.
    check(WebhookHeaders::new("msg_é", "0", "v1,x"), "webhook-id");
    check(
        WebhookHeaders::new("msg_1", "0\u{7f}", "v1,x"),
        "webhook-timestamp",
    );
    check(
        WebhookHeaders::new("msg_1", "0", "v1,x\n"),
        "webhook-signature",
    );
    // Bytes that are not UTF-8, through `from_bytes_fn`: present, and invalid.
    let headers = WebhookHeaders::from_bytes_fn(|name| match name {
        "webhook-timestamp" => Some(&b"\xff0"[..]),
        _ => Some(&b"msg_1"[..]),
    });
    check(headers, "webhook-timestamp");
    let headers = WebhookHeaders::from_bytes_fn(|name| (name != "webhook-id").then_some(&b"0"[..]));
    let err = verifier.verify_at(headers, b"{}", 0).unwrap_err();
    assert!(err.is_missing_header());
}
