//! Receiving signed webhooks: what passes, and the kind of each refusal.

use linq_hooks_events::Event;
use linq_hooks_receiver::{
    Error, Secret, Verifier, Webhook, WebhookHeaders, headers_from_pairs, parse_body, receive,
    receive_at,
};
use linq_hooks_signature::{new_message_id, sign};
use linq_hooks_simulator::Simulation;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const NOW: i64 = 1_744_882_200;

fn secret(text: &str) -> Secret {
    text.parse().unwrap()
}

/// A request as a sender makes it: the header pairs (names in mixed case, as a proxy might
/// pass them on) and the body.
struct Signed {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Signed {
    fn new(secrets: &[&str], timestamp: i64, body: impl Into<Vec<u8>>) -> Signed {
        let body = body.into();
        let secrets: Vec<Secret> = secrets.iter().map(|s| secret(s)).collect();
        let id = new_message_id();
        let signature = sign(&secrets, &id, timestamp, &body);
        Signed {
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Webhook-Id".into(), id),
                ("WEBHOOK-TIMESTAMP".into(), timestamp.to_string()),
                ("webhook-signature".into(), signature),
            ],
            body,
        }
    }

    fn of(event: &Event) -> Signed {
        Signed::new(&[SECRET], NOW, event.to_json_bytes())
    }

    fn without(mut self, header: &str) -> Signed {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(header));
        self
    }

    fn headers(&self) -> WebhookHeaders<'_> {
        headers_from_pairs(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    fn id(&self) -> &str {
        self.headers().id.unwrap()
    }

    fn receive_with(&self, secrets: &[&str], now: i64) -> Result<Webhook, Error> {
        let verifier = Verifier::new(secrets.iter().map(|s| secret(s)));
        receive_at(&verifier, self.headers(), &self.body, now)
    }

    fn receive(&self) -> Result<Webhook, Error> {
        self.receive_with(&[SECRET], NOW)
    }
}

/// Which kind an error is, as one word, so that a test can assert exactly one kind.
fn kind(err: &Error) -> &'static str {
    let kinds = [
        (err.is_bad_signature(), "bad signature"),
        (err.is_stale_timestamp(), "stale timestamp"),
        (err.is_missing_header(), "missing header"),
        (err.is_invalid_header(), "invalid header"),
        (err.is_unknown_event(), "unknown event"),
        (err.is_malformed_body(), "malformed body"),
    ];
    let set: Vec<&str> = kinds
        .iter()
        .filter(|(is, _)| *is)
        .map(|(_, k)| *k)
        .collect();
    assert_eq!(set.len(), 1, "exactly one kind: {set:?} for {err:?}");
    let unverified = !err.is_unknown_event() && !err.is_malformed_body();
    assert_eq!(err.is_unverified(), unverified, "{err:?}");
    set[0]
}

#[test]
fn every_simulated_event_is_received_as_sent() {
    let events: Vec<Event> = Simulation::new(11).runs(3).events().collect();
    assert!(events.len() > 30);
    for event in &events {
        let request = Signed::of(event);
        let webhook = request.receive().unwrap();
        assert_eq!(&webhook.event, event);
        assert_eq!(webhook.id, request.id());
        assert_eq!(webhook.timestamp, NOW);
    }
}

#[test]
fn receive_uses_the_system_clock() {
    let event = Simulation::new(1).events().next().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let request = Signed::new(&[SECRET], now, event.to_json_bytes());
    let verifier = Verifier::new([secret(SECRET)]);
    let webhook = receive(&verifier, request.headers(), &request.body).unwrap();
    assert_eq!(webhook.event, event);
    // Signed an hour ago: stale by the system clock.
    let old = Signed::new(&[SECRET], now - 3600, event.to_json_bytes());
    let err = receive(&verifier, old.headers(), &old.body).unwrap_err();
    assert_eq!(kind(&err), "stale timestamp");
}

#[test]
fn either_secret_of_a_rotation_is_accepted() {
    let event = Simulation::new(2).events().next().unwrap();
    let request = Signed::new(&[SECRET, OTHER_SECRET], NOW, event.to_json_bytes());
    assert!(request.receive_with(&[OTHER_SECRET], NOW).is_ok());
    assert!(request.receive_with(&[SECRET], NOW).is_ok());
    let single = Signed::of(&event);
    assert!(single.receive_with(&[OTHER_SECRET, SECRET], NOW).is_ok());
}

#[test]
fn refusals_and_their_kinds() {
    let event = Simulation::new(4).events().nth(3).unwrap();
    let body = event.to_json_bytes();

    let mut tampered = Signed::of(&event);
    let at = tampered.body.len() - 3;
    tampered.body[at] ^= 1; // one bit of the timestamp's milliseconds
    assert_eq!(kind(&tampered.receive().unwrap_err()), "bad signature");

    let wrong_secret = Signed::new(&[OTHER_SECRET], NOW, body.clone());
    assert_eq!(kind(&wrong_secret.receive().unwrap_err()), "bad signature");

    let no_secret = Signed::of(&event).receive_with(&[], NOW).unwrap_err();
    assert_eq!(kind(&no_secret), "bad signature");

    let signed = Signed::of(&event);
    assert!(signed.receive_with(&[SECRET], NOW + 300).is_ok());
    assert!(signed.receive_with(&[SECRET], NOW - 300).is_ok());
    for now in [NOW + 301, NOW - 301, 0] {
        let err = signed.receive_with(&[SECRET], now).unwrap_err();
        assert_eq!(kind(&err), "stale timestamp");
    }
    let short = Verifier::new([secret(SECRET)]).tolerance(std::time::Duration::from_secs(10));
    let err = receive_at(&short, signed.headers(), &signed.body, NOW + 11).unwrap_err();
    assert_eq!(kind(&err), "stale timestamp");

    for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let err = Signed::of(&event).without(header).receive().unwrap_err();
        assert_eq!(kind(&err), "missing header");
        assert_eq!(err.header(), Some(header));
    }
    let no_headers = receive_at(
        &Verifier::new([secret(SECRET)]),
        WebhookHeaders::default(),
        &body,
        NOW,
    )
    .unwrap_err();
    assert_eq!(kind(&no_headers), "missing header");

    let mut odd_timestamp = Signed::of(&event);
    odd_timestamp.headers[2].1 = "2025-04-17T09:30:00Z".into();
    let err = odd_timestamp.receive().unwrap_err();
    assert_eq!(kind(&err), "invalid header");
    assert_eq!(err.header(), Some("webhook-timestamp"));
}

#[test]
fn bodies_that_are_not_events() {
    let cases: [(&[u8], &str, &str); 9] = [
        (
            br#"{"event": "foo"}"#,
            "unknown event",
            "event: unknown event \"foo\"",
        ),
        (
            br#"{"event": "Task_State_Change", "run_id": "r"}"#,
            "unknown event",
            "event: unknown event",
        ),
        (
            br#"{"event": 7}"#,
            "malformed body",
            "event: expected a string",
        ),
        (
            br#"{"run_id": "r1"}"#,
            "malformed body",
            "event: missing required field `event`",
        ),
        (
            br#"{"event": "new_plan", "plan_id": "p"}"#,
            "malformed body",
            "timestamp: missing required field `timestamp`",
        ),
        (
            br#"["event", "new_plan"]"#,
            "malformed body",
            "$: expected an event object",
        ),
        (
            b"{\"event\": \"new_plan\",",
            "malformed body",
            "EOF while parsing",
        ),
        (b"", "malformed body", "EOF while parsing"),
        (b"\xff\xfe{}", "malformed body", "expected value"),
    ];
    for (body, expected_kind, cause) in cases {
        let shown = String::from_utf8_lossy(body).into_owned();
        // Signed correctly: the body is what is wrong.
        let request = Signed::new(&[SECRET], NOW, body);
        let err = request.receive().unwrap_err();
        assert_eq!(kind(&err), expected_kind, "{shown}");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains(cause), "{shown}: {source}");
        // parse_body, unsigned, says the same.
        assert_eq!(
            kind(&parse_body(body).unwrap_err()),
            expected_kind,
            "{shown}"
        );
    }
    assert_eq!(
        parse_body(br#"{"event": "foo"}"#)
            .unwrap_err()
            .unknown_event(),
        Some("foo")
    );
}

/// The answer for each kind: 401 unverified, 400 malformed, 2xx (acknowledge and ignore) for
/// an unknown kind, so that a newer sender's event is not retried for hours.
#[test]
fn status_of_each_kind() {
    let event = Simulation::new(4).events().next().unwrap();
    let mut stale = Signed::of(&event);
    stale.headers[2].1 = (NOW - 3600).to_string();
    let cases: [(Error, u16); 8] = [
        (
            Signed::of(&event)
                .receive_with(&[OTHER_SECRET], NOW)
                .unwrap_err(),
            401,
        ),
        (stale.receive().unwrap_err(), 401),
        (
            Signed::of(&event)
                .without("webhook-id")
                .receive()
                .unwrap_err(),
            401,
        ),
        (
            Signed::new(&[SECRET], NOW, br#"{"event": "foo"}"#)
                .receive()
                .unwrap_err(),
            204,
        ),
        (parse_body(br#"{"event": "foo"}"#).unwrap_err(), 204),
        (
            Signed::new(&[SECRET], NOW, "not json")
                .receive()
                .unwrap_err(),
            400,
        ),
        (parse_body(br#"{"event": "new_plan"}"#).unwrap_err(), 400),
        (parse_body(b"[]").unwrap_err(), 400),
    ];
    for (i, (err, status)) in cases.iter().enumerate() {
        assert_eq!(err.status(), *status, "case {i}: {} {err:?}", kind(err));
    }
    let mut odd_timestamp = Signed::of(&event);
    odd_timestamp.headers[2].1 = "yesterday".into();
    let err = odd_timestamp.receive().unwrap_err();
    assert_eq!((kind(&err), err.status().as_u16()), ("invalid header", 401));
}

#[test]
fn an_unverified_body_is_not_read() {
    // A bad signature over a body that is not even JSON: the signature is the error.
    let mut request = Signed::new(&[SECRET], NOW, "not json");
    request.headers[3].1 = sign(&[secret(OTHER_SECRET)], request.id(), NOW, b"not json");
    assert_eq!(kind(&request.receive().unwrap_err()), "bad signature");
}

#[test]
fn messages_name_the_kind_and_sources_say_why() {
    let event = Simulation::new(4).events().next().unwrap();
    let err = Signed::of(&event)
        .receive_with(&[OTHER_SECRET], NOW)
        .unwrap_err();
    assert_eq!(err.to_string(), "webhook not verified");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "no webhook signature matches"
    );
    let err = parse_body(br#"{"event": "foo"}"#).unwrap_err();
    assert_eq!(err.to_string(), "unknown event kind");
    assert_eq!(
        parse_body(b"[").unwrap_err().to_string(),
        "malformed webhook body: not JSON"
    );
    assert_eq!(
        parse_body(b"[]").unwrap_err().to_string(),
        "malformed webhook body: not an event"
    );
}

/// The first published Standard Webhooks vector: its signature verifies at its time, and then
/// the body, `{"test": 2432232314}`, is JSON without `event`: malformed, not unknown.
#[test]
fn standard_webhooks_vector_verifies_then_is_not_an_event() {
    let verifier = Verifier::new([secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]);
    let pairs = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    let body = br#"{"test": 2432232314}"#;

    // The signature itself is good: the verifier alone accepts it.
    verifier
        .verify_at(headers_from_pairs(pairs), body, 1614265330)
        .unwrap();
    let err = receive_at(&verifier, headers_from_pairs(pairs), body, 1614265330).unwrap_err();
    assert_eq!(kind(&err), "malformed body");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "event: missing required field `event` (one of run_state_change, task_state_change, \
         safety_state_change, labware_movement, new_plan)"
    );

    // A byte changed: the signature is what fails, before the body is looked at.
    let err = receive_at(
        &verifier,
        headers_from_pairs(pairs),
        br#"{"test": 2432232315}"#,
        1614265330,
    )
    .unwrap_err();
    assert_eq!(kind(&err), "bad signature");
    // Six minutes later: stale.
    let err = receive_at(&verifier, headers_from_pairs(pairs), body, 1614265330 + 360).unwrap_err();
    assert_eq!(kind(&err), "stale timestamp");
}

#[test]
fn header_pairs_are_found_case_insensitively_first_value_wins() {
    let headers = headers_from_pairs([
        ("WEBHOOK-ID", "msg_a"),
        ("Webhook-Id", "msg_b"),
        ("webhook-Timestamp", "1"),
        ("Webhook-Signaturex", "v1,x"),
    ]);
    assert_eq!(headers.id, Some("msg_a"));
    assert_eq!(headers.timestamp, Some("1"));
    assert_eq!(headers.signature, None);
    assert_eq!(headers_from_pairs([]), WebhookHeaders::default());
}

/// A present webhook header that is not visible ASCII is invalid, not missing, by either way
/// of reading headers.
#[test]
fn non_ascii_header_is_invalid_not_missing() {
    use linq_hooks_receiver::http::{HeaderMap, HeaderValue};
    use linq_hooks_receiver::{StatusCode, Verifier, WebhookHeaders, headers_from_map, receive_at};

    let verifier = Verifier::new(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap()]);
    for bad in [&b"msg_\xff"[..], "msg_é".as_bytes(), b"msg_\x80"] {
        let mut map = HeaderMap::new();
        map.insert("webhook-id", HeaderValue::from_bytes(bad).unwrap());
        map.insert("webhook-timestamp", HeaderValue::from_static("0"));
        map.insert("webhook-signature", HeaderValue::from_static("v1,x"));
        let err = receive_at(&verifier, headers_from_map(&map), b"{}", 0).unwrap_err();
        assert!(
            err.is_invalid_header() && !err.is_missing_header(),
            "{bad:?}"
        );
        assert_eq!(err.header(), Some("webhook-id"));
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);

        let from_bytes = WebhookHeaders::from_bytes_fn(|name| map.get(name).map(|v| v.as_bytes()));
        assert_eq!(from_bytes, headers_from_map(&map));
    }
    // Through `from_fn`, text that is not ASCII reaches the verifier and is refused the same way.
    let headers =
        WebhookHeaders::from_fn(|name| Some(if name == "webhook-id" { "msg_é" } else { "0" }));
    let err = receive_at(&verifier, headers, b"{}", 0).unwrap_err();
    assert!(err.is_invalid_header() && !err.is_missing_header());
    // And an absent header is still missing.
    let err = receive_at(&verifier, headers_from_map(&HeaderMap::new()), b"{}", 0).unwrap_err();
    assert!(err.is_missing_header());
}
