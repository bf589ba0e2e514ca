//! Embedding the dispatcher in a scheduler of your own, with only `linq-hooks-delivery` (and
//! Tokio): hooks given as live data, a transport of your own — here each webhook is written to a
//! file — and deliveries pushed as the scheduler's events happen.
//!
//! `cargo run -p linq-hooks-delivery --example embed` prints the directory it wrote to.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use linq_hooks_delivery::transport::{Error, async_trait};
use linq_hooks_delivery::{
    Config, Destination, Dispatcher, HookParameters, MemoryOutbox, NewDelivery, Request, Response,
    Secret, Transport, events,
};

/// Writes each webhook to `<dir>/<n>.http` (the URL, the headers, a blank line, the body) and
/// answers 204.
struct FileTransport {
    dir: PathBuf,
    written: AtomicUsize,
}

#[async_trait]
impl Transport for FileTransport {
    async fn send(&self, request: Request) -> Result<Response, Error> {
        let n = self.written.fetch_add(1, Ordering::SeqCst);
        let mut text = format!("POST {}\n", request.url());
        for (name, value) in request.headers() {
            text.push_str(&format!("{name}: {value}\n"));
        }
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(request.body()));
        let path = self.dir.join(format!("{n}.http"));
        // A failed write is a failed attempt: the dispatcher retries it as its policy says. (A
        // small local write; a slow sink would go through `tokio::task::spawn_blocking`.)
        std::fs::write(&path, text).map_err(Error::other)?;
        Ok(Response::new(204))
    }
}

/// The scheduler: one hook for plans, signed with a secret, and three plans made one after
/// another while the dispatcher runs. Returns the files written, in order.
async fn schedule(dir: &Path) -> Vec<PathBuf> {
    let transport = Arc::new(FileTransport {
        dir: dir.to_owned(),
        written: AtomicUsize::new(0),
    });
    let outbox = Arc::new(MemoryOutbox::new(0));
    let dispatcher = Dispatcher::without_hooks(transport, outbox.clone(), Config::default());

    // Hooks are live data: a hook id of the scheduler's choosing, and where its webhooks go.
    const PLANS: u64 = 7;
    let parameters =
        HookParameters::new("https://lims.example/plans", Default::default()).expect("a valid URL");
    let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        .parse()
        .expect("a secret");
    dispatcher.set(PLANS, Destination::new(parameters).secret(secret));

    let running = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move { dispatcher.run().await }
    });
    for plan in 1..=3 {
        let event = events::parse_event(&format!(
            r#"{{"event": "new_plan", "plan_id": "plan-{plan}", "timestamp": "2025-04-17T09:3{plan}:00Z"}}"#
        ))
        .expect("a valid event");
        // `push` wakes the hook's worker: no `Dispatcher::wake` needed with a MemoryOutbox.
        for delivery in NewDelivery::for_hooks(&event, [PLANS]) {
            outbox.push(delivery);
        }
    }
    dispatcher.close(); // nothing more: run returns once the outbox is drained
    running.await.expect("the dispatcher does not panic");
    assert_eq!(outbox.report(PLANS).delivered, 3);

    (0..3).map(|n| dir.join(format!("{n}.http"))).collect()
}

fn main() {
    let dir = std::env::temp_dir().join(format!("linq-hooks-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    // The dispatcher needs a Tokio runtime with time enabled.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let files = runtime.block_on(schedule(&dir));
    println!("{} webhooks written to {}", files.len(), dir.display());
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_scheduler_writes_each_webhook_in_order_and_signed() {
        let dir =
            std::env::temp_dir().join(format!("linq-hooks-embed-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = super::schedule(&dir).await;
        for (n, file) in files.iter().enumerate() {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                text.starts_with("POST https://lims.example/plans\n"),
                "{text}"
            );
            assert!(text.contains("webhook-signature: v1,"), "{text}");
            assert!(
                text.contains(&format!("\"plan_id\":\"plan-{}\"", n + 1)),
                "{text}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
