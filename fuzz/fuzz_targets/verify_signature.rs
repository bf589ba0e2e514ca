//! `Verifier::verify_at` on arbitrary headers never panics; a signature made by `sign` verifies
//! exactly when "now" is within the tolerance, and never for another body.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use linq_hooks_signature::{Secret, Verifier, WebhookHeaders, sign};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// Raw key bytes; also tried as the secret's text form.
    secret: &'a [u8],
    id: &'a str,
    timestamp: i64,
    body: &'a [u8],
    /// Another body: it must not verify with the signature of `body`.
    other_body: &'a [u8],
    /// A `webhook-signature` value as a receiver might get it.
    header: &'a str,
    /// A `webhook-timestamp` value as a receiver might get it.
    timestamp_header: Option<&'a str>,
    /// "now" for the raw headers, and for the signed delivery.
    now: i64,
    /// How far from `timestamp` "now" is for the in-tolerance check.
    skew: i64,
    tolerance_secs: Option<u64>,
}

fuzz_target!(|input: Input<'_>| {
    let _ = std::str::from_utf8(input.secret).map(str::parse::<Secret>);
    let Ok(secret) = Secret::from_bytes(input.secret) else {
        assert!(input.secret.is_empty());
        return;
    };
    let mut verifier = Verifier::new([secret.clone()]);
    if let Some(secs) = input.tolerance_secs {
        verifier = verifier.tolerance(Duration::from_secs(secs));
    }
    let tolerance = input
        .tolerance_secs
        .unwrap_or(linq_hooks_signature::DEFAULT_TOLERANCE.as_secs());

    // Whatever arrives, no panic.
    let raw = WebhookHeaders {
        id: Some(input.id),
        timestamp: input.timestamp_header,
        signature: Some(input.header),
    };
    if let Err(err) = verifier.verify_at(raw, input.body, input.now) {
        let _ = err.to_string();
    }

    let signature = sign(
        std::slice::from_ref(&secret),
        input.id,
        input.timestamp,
        input.body,
    );
    let ts = input.timestamp.to_string();
    let headers = WebhookHeaders::new(input.id, &ts, &signature);
    let within = |now: i64| {
        (i128::from(now) - i128::from(input.timestamp)).unsigned_abs() <= u128::from(tolerance)
    };

    // At an arbitrary "now": verifies exactly when within the tolerance, else it is stale.
    match verifier.verify_at(headers, input.body, input.now) {
        Ok(()) => assert!(within(input.now), "verified outside the tolerance"),
        Err(err) => assert!(
            !within(input.now) && err.is_stale_timestamp(),
            "refused within the tolerance: {err}"
        ),
    }

    // At a "now" within the tolerance: it verifies, also among other signatures.
    let bound = i64::try_from(tolerance).unwrap_or(i64::MAX);
    let now = input
        .timestamp
        .saturating_add(input.skew.checked_rem(bound.saturating_add(1)).unwrap_or(0));
    if within(now) {
        verifier
            .verify_at(headers, input.body, now)
            .unwrap_or_else(|e| panic!("own signature refused: {e}"));
        let crowded = format!("{} {signature} {}", input.header, input.header);
        verifier
            .verify_at(
                WebhookHeaders::new(input.id, &ts, &crowded),
                input.body,
                now,
            )
            .unwrap_or_else(|e| panic!("own signature among others refused: {e}"));
        // Another body never verifies.
        if input.other_body != input.body {
            let err = verifier
                .verify_at(headers, input.other_body, now)
                .expect_err("another body verified");
            assert!(err.is_bad_signature(), "{err}");
        }
    }
});
