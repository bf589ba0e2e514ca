//! Signing and verifying cost per webhook, for a typical event body.
//!
//! Run: `cargo bench -p linq-hooks-signature --bench sign`. Figures go in BENCHMARKS.md.

use linq_hooks_signature::{Secret, Verifier, WebhookHeaders, sign};

fn main() {
    divan::main();
}

const BODY: &[u8] = br#"{"event":"task_state_change","run_id":"run-42","task_id":"read-plate-1","state":"succeeded","message":"Task read-plate-1 succeeded.","timestamp":"2025-04-17T09:30:00.000Z"}"#;

fn secret() -> Secret {
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap()
}

#[divan::bench]
fn sign_one_secret(bencher: divan::Bencher<'_, '_>) {
    let secrets = [secret()];
    bencher.bench_local(|| {
        sign(
            divan::black_box(&secrets),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            divan::black_box(BODY),
        )
    });
}

#[divan::bench]
fn verify_one_secret(bencher: divan::Bencher<'_, '_>) {
    let secrets = [secret()];
    let signature = sign(
        &secrets,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        BODY,
    );
    let verifier = Verifier::new(secrets);
    bencher.bench_local(|| {
        let headers = WebhookHeaders::new("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &signature);
        verifier.verify_at(headers, divan::black_box(BODY), 1_614_265_330)
    });
}
