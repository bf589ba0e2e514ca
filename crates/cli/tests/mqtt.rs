//! `linq-hooks serve` delivering over HTTP and MQTT side by side, as real processes: a real
//! mosquitto broker (started by the test on a free port, stopped and started again mid-run), a
//! real HTTP receiver, `simulate --ingest` posting a run, and a rumqttc subscriber.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Serve, eventually, hooks_file, store};
use linq_hooks_signature::{Secret, Verifier, WebhookHeaders};
use linq_hooks_tests::{Mosquitto, Received, Receiver};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value, json};

/// Everything a subscriber received, in order, duplicates included.
type Inbox = Arc<Mutex<Vec<Publish>>>;

/// A subscriber to `topic` with QoS 1 and a persistent session (clean start off, a session
/// that outlives a disconnection), so that the broker keeps what is published while it is
/// away, across a broker restart too (the broker runs with persistence). It reconnects after
/// every error, as long as the test runs. Returns once the subscription is acknowledged.
async fn subscribe(broker: &Mosquitto, topic: &str) -> Inbox {
    let mut options = MqttOptions::new("linq-hooks-test-subscriber", "127.0.0.1", broker.port());
    options
        .set_clean_start(false)
        .set_session_expiry_interval(Some(3600))
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let inbox = Inbox::default();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn({
        let inbox = inbox.clone();
        async move {
            let _client = client;
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        inbox.lock().unwrap().push(publish)
                    }
                    Ok(_) => {}
                    // The broker is away: poll again (rumqttc reconnects) after a pause.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), subscribed)
        .await
        .expect("the broker acknowledges the subscription")
        .unwrap();
    inbox
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

/// The bodies of the first arrival of each `webhook-id`, in order of arrival.
fn first_mqtt(inbox: &Inbox) -> Vec<Value> {
    let mut seen = HashSet::new();
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|p| seen.insert(property(p, "webhook-id").unwrap_or_default().to_string()))
        .map(|p| serde_json::from_slice(&p.payload).unwrap())
        .collect()
}

fn first_http(received: &[Received]) -> Vec<Value> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|r| seen.insert(r.header("webhook-id").unwrap_or_default().to_string()))
        .map(Received::json)
        .collect()
}

/// The task state changes of `simulate --seed SEED --runs RUNS`, in the order it prints them.
async fn simulated_task_changes(seed: &str, runs: &str) -> Vec<(String, String, String)> {
    let out = common::linq_hooks(&["simulate", "--seed", seed, "--runs", runs], "").await;
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    common::text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|event| event["event"] == "task_state_change")
        .map(|event| key(&event))
        .collect()
}

/// What tells two task state changes apart (the timestamps differ with --rate, which starts
/// the runs now).
fn key(event: &Value) -> (String, String, String) {
    let text = |name: &str| event[name].as_str().unwrap_or_default().to_string();
    (text("run_id"), text("task_id"), text("state"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_goes_to_an_http_and_an_mqtt_hook_and_survives_a_broker_restart() {
    let mut broker = Mosquitto::start_with("persistence true\npersistence_location {dir}/\n");
    let inbox = subscribe(&broker, "lab/runs").await;
    let http = Receiver::start(|_, _| (204, vec![])).await;

    let hooks = hooks_file(
        "mqtt-and-http",
        json!([
            {"filter": "on_task_state_change", "task_ids": [], "parameters": {"url": http.url("/tasks")}},
            {"filter": "on_task_state_change", "task_ids": [],
             "parameters": {"url": broker.url("lab/runs"), "headers": {"X-Lab": "north"}}}
        ]),
    );
    let serve = Serve::start(&[
        "--hooks",
        &hooks,
        "--store",
        &store("mqtt-and-http"),
        "--retry-schedule",
        &["200ms"; 300].join(","),
        "--timeout",
        "5s",
    ])
    .await;
    let secret = serve.get("/v1/workflows/default/secret").await["secret"]
        .as_str()
        .unwrap()
        .to_string();

    // A simulated run, paced, so that the broker goes away while it is under way.
    let expected = simulated_task_changes("7", "3").await;
    assert!(expected.len() > 20, "{}", expected.len());
    let simulate = tokio::spawn({
        let base = serve.base.clone();
        async move {
            common::linq_hooks(
                &[
                    "simulate", "--seed", "7", "--runs", "3", "--rate", "60", "--ingest", &base,
                ],
                "",
            )
            .await
        }
    });

    eventually("some webhooks reach the subscriber", || async {
        first_mqtt(&inbox).len() >= 8
    })
    .await;
    broker.stop();
    // Deliveries to the broker fail to connect and are retried meanwhile.
    let refused = format!("could not connect: mqtt://127.0.0.1:{}", broker.port());
    eventually("an MQTT attempt fails while the broker is down", || async {
        let pending = serve.get("/v1/deliveries?state=pending&limit=200").await;
        for delivery in pending["deliveries"].as_array().unwrap() {
            if delivery["attempts"].as_u64().unwrap_or(0) >= 1 {
                let id = delivery["id"].as_u64().unwrap();
                let detail = serve.get(&format!("/v1/deliveries/{id}")).await;
                if detail.to_string().contains(&refused) {
                    return true;
                }
            }
        }
        false
    })
    .await;
    broker.restart();

    let ingested = simulate.await.unwrap();
    assert!(
        ingested.status.success(),
        "every event acknowledged: {}",
        common::text(&ingested.stderr)
    );
    eventually("every task change reaches both hooks", || async {
        first_mqtt(&inbox).len() >= expected.len()
            && first_http(&http.received()).len() >= expected.len()
    })
    .await;

    // In order, each once by webhook-id, the same over both transports.
    let over_mqtt: Vec<_> = first_mqtt(&inbox).iter().map(key).collect();
    let over_http: Vec<_> = first_http(&http.received()).iter().map(key).collect();
    assert_eq!(over_mqtt, expected);
    assert_eq!(over_http, expected);

    // Every publish carries what an HTTP receiver gets as headers, and its signature verifies
    // with the workflow's secret.
    let verifier = Verifier::new([secret.parse::<Secret>().unwrap()]);
    for publish in inbox.lock().unwrap().iter() {
        let properties = publish.properties.as_ref().unwrap();
        assert_eq!(properties.content_type.as_deref(), Some("application/json"));
        assert_eq!(property(publish, "x-lab"), Some("north"));
        let headers = WebhookHeaders::from_fn(|name| property(publish, name));
        verifier
            .verify(headers, &publish.payload)
            .expect("the signature verifies with the workflow's secret");
    }
    let log = broker.log();
    assert!(log.contains("linq-hooks-"), "serve connected: {log}");
    serve.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_publishes_to_an_mqtt_hook_and_reports_a_broker_that_is_down() {
    let mut broker = Mosquitto::start();
    let inbox = subscribe(&broker, "plans").await;
    let hooks = hooks_file(
        "dispatch-mqtt",
        json!([common::plan_hook(broker.url("plans"))]),
    );
    let events: String = (0..3).map(|n| format!("{}\n", common::plan(n))).collect();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let out = common::linq_hooks(
        &["dispatch", "--hooks", &hooks, "--secret", secret],
        &events,
    )
    .await;
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    // The broker has acknowledged all three; its copies to the subscriber may still be on
    // their way.
    eventually("the three reach the subscriber", || async {
        first_mqtt(&inbox).len() >= 3
    })
    .await;
    let plans: Vec<_> = first_mqtt(&inbox)
        .iter()
        .map(|body| body["plan_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(plans, ["p0", "p1", "p2"]);
    let verifier = Verifier::new([secret.parse::<Secret>().unwrap()]);
    for publish in inbox.lock().unwrap().iter() {
        let headers = WebhookHeaders::from_fn(|name| property(publish, name));
        verifier.verify(headers, &publish.payload).unwrap();
    }

    broker.stop();
    let out = common::linq_hooks(
        &["dispatch", "--hooks", &hooks, "--retry-schedule", ""],
        &events,
    )
    .await;
    let stderr = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("could not connect"), "{stderr}");
}

/// `--deny-cidr` holds for MQTT hooks as for HTTP ones: nothing reaches a refused broker, each
/// delivery fails at once naming the rule (exit 3), and nothing is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_egress_policy_holds_for_mqtt_hooks() {
    let broker = Mosquitto::start();
    let inbox = subscribe(&broker, "plans").await;
    let hooks = hooks_file(
        "egress-mqtt",
        json!([common::plan_hook(broker.url("plans"))]),
    );
    let events: String = (0..2).map(|n| format!("{}\n", common::plan(n))).collect();
    let out = common::linq_hooks(
        &["dispatch", "--hooks", &hooks, "--deny-cidr", "127.0.0.0/8"],
        &events,
    )
    .await;
    let stderr = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "blocked by the egress policy: refused by --deny-cidr 127.0.0.0/8: 127.0.0.1:{}",
            broker.port()
        )),
        "{stderr}"
    );
    assert!(inbox.lock().unwrap().is_empty(), "nothing was published");
}

#[tokio::test]
async fn validate_accepts_mqtt_urls_and_names_the_schemes_it_knows() {
    let hooks = hooks_file(
        "schemes",
        json!([
            common::plan_hook("mqtts://broker.lab/lab/runs".into()),
            common::plan_hook("amqp://broker.lab/lab".into()),
            common::plan_hook("mqtt://broker.lab/lab/#".into()),
        ]),
    );
    let out = common::linq_hooks(&["validate", &hooks], "").await;
    let stderr = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("[0]"), "{stderr}");
    assert!(
        stderr.contains(
            "[1].parameters.url: unsupported URL scheme `amqp:`; hook URLs are http://, https://, mqtt://, mqtts://"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("[2].parameters.url: an MQTT URL has no query or fragment"),
        "{stderr}"
    );
}
