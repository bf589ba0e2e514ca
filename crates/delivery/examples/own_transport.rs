//! Swapping the transport: the dispatcher delivers through any `Transport`, chosen per hook by
//! the URL's scheme with `transport::ByScheme`. Here `mqtt://` hooks go to a transport of the
//! application's own, which hands each webhook to a consumer in the same process (a message
//! bus, a dashboard's channel) instead of a broker; the consumer verifies each one as a
//! receiver would. (`examples/embed.rs` shows live hooks and a transport that writes files.)
//!
//! `cargo run -p linq-hooks-delivery --example own_transport`

use std::sync::Arc;

use linq_hooks_delivery::signature::{Verifier, WebhookHeaders};
use linq_hooks_delivery::transport::{ByScheme, Error, async_trait};
use linq_hooks_delivery::{
    Config, Dispatcher, MemoryOutbox, NewDelivery, Request, Response, Secret, Transport, events,
    model,
};
use tokio::sync::mpsc;

/// Hands each webhook to the channel and answers 200; a consumer that went away is a
/// connection failure, which the dispatcher retries on its schedule.
struct ToChannel(mpsc::UnboundedSender<Request>);

#[async_trait]
impl Transport for ToChannel {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        self.0
            .send(request)
            .map_err(|_| Error::connect("the consumer has stopped"))?;
        Ok(Response::new(200))
    }
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Delivers three plans to an `mqtt://` hook through the application's own transport; returns
/// the plan ids the consumer received, each verified, in order.
async fn run() -> Vec<String> {
    let hooks: Arc<[_]> = model::parse_hooks(
        r#"[{"filter": "on_new_plan", "parameters": {"url": "mqtt://bus/lab/plans"}}]"#,
    )
    .expect("a valid hook")
    .hooks
    .into();
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Only `mqtt` is routed: an `http` hook would fail as an invalid request, never be sent.
    let transport = Arc::new(ByScheme::new().route(["mqtt"], ToChannel(tx)));
    let outbox = Arc::new(MemoryOutbox::new(hooks.len()));
    let secret: Secret = SECRET.parse().expect("a secret");
    let config = Config::default().secrets(vec![secret.clone()]);
    let dispatcher =
        Dispatcher::new(hooks, transport, outbox.clone(), config).expect("one hook, one outbox");
    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });

    for plan in 1..=3 {
        let event = events::parse_event(&format!(
            r#"{{"event": "new_plan", "plan_id": "plan-{plan}", "timestamp": "2025-04-17T09:3{plan}:00Z"}}"#
        ))
        .expect("a valid event");
        for delivery in NewDelivery::for_hooks(&event, [0]) {
            outbox.push(delivery);
        }
    }
    dispatcher.close();
    running.await.expect("the dispatcher does not panic");

    // The consumer: the same checks as an HTTP receiver, on the same values.
    let verifier = Verifier::new([secret]);
    let mut plans = Vec::new();
    while let Ok(request) = rx.try_recv() {
        verifier
            .verify(
                WebhookHeaders::from_fn(|name| request.header(name)),
                request.body(),
            )
            .expect("signed with the secret");
        let body: serde_json::Value = serde_json::from_slice(request.body()).expect("JSON");
        plans.push(body["plan_id"].as_str().unwrap_or_default().to_string());
    }
    plans
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for plan in runtime.block_on(run()) {
        println!("received and verified {plan}");
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn each_webhook_reaches_the_consumer_in_order_and_verifies() {
        assert_eq!(super::run().await, ["plan-1", "plan-2", "plan-3"]);
    }
}
