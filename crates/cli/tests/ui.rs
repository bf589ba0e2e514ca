//! The dashboard in a real browser: `linq-hooks serve` as a process with `--token`, a real
//! receiver on 127.0.0.1 that answers 500 (then 200), and Debian's headless Chromium driven over
//! WebDriver (`chromedriver`, with the fantoccini client). The test opens `/ui`, gives the
//! token, finds the failed delivery, brings the receiver back, clicks "Replay", and sees the
//! delivery become delivered, in the page and at the receiver.
//!
//! It takes a screenshot at 1366×768: `docs/dashboard.png` when `LINQ_HOOKS_UPDATE_SCREENSHOT=1`
//! (what the README shows), else a file in the temporary directory.
//!
//! It needs `chromedriver` and `chromium` (Debian: `apt-get install chromium chromium-driver`;
//! `.ci/run` installs them); `$CHROMEDRIVER` and `$CHROMIUM` name other binaries.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Serve, hooks_file, plan, plan_hook, store, switchable};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use linq_hooks_tests::{Receiver, request};
use serde_json::{Value, json};

const TOKEN: &str = "dashboard-test-token";
/// What the failing receiver answers, with its 500.
const FAILURE: &str = "database unavailable: lab-log is read-only for maintenance";
/// How long any one thing the test waits for may take before it fails.
const WAIT: Duration = Duration::from_secs(30);

/// A `chromedriver` process in its own process group, so that it and every browser process it
/// starts are killed together when the test ends, however it ends.
struct Chromedriver {
    child: std::process::Child,
    url: String,
    /// The browser's temporary directory (its profile, its singleton socket), removed at drop.
    temp: PathBuf,
}

impl Chromedriver {
    async fn start() -> Chromedriver {
        let binary = std::env::var_os("CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| find_on_path("chromedriver"))
            .unwrap_or_else(|| {
                panic!(
                    "chromedriver not found (nor $CHROMEDRIVER): the dashboard's browser test needs \
                     Debian's headless Chromium and its WebDriver: `apt-get install chromium \
                     chromium-driver` (.ci/run installs them)"
                )
            });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let temp =
            std::env::temp_dir().join(format!("linq-hooks-ui-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&temp).unwrap();
        let mut command = std::process::Command::new(&binary);
        command
            // Chromium leaves its singleton socket's directory in TMPDIR: ours, removed at drop.
            .env("TMPDIR", &temp)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            // The page shows times in the browser's zone: fixed, so screenshots compare.
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (Debian: `apt-get install chromium chromium-driver`)",
                binary.display()
            )
        });
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            temp,
        };
        let status = format!("{}/status", driver.url);
        let ready = async {
            loop {
                if let Ok(reply) = request("GET", &status, None, None).await
                    && reply.body["value"]["ready"] == true
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(WAIT, ready)
            .await
            .expect("chromedriver answers /status");
        driver
    }

    /// A headless Chromium session at a laptop's screen size.
    async fn browser(&self) -> Client {
        let chromium = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .or_else(|| find_on_path("chromium"));
        let mut options = json!({
            "args": [
                "--headless=new",
                // As root (CI), Chromium's sandbox cannot start; the page is our own.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--window-size=1366,768",
                "--force-device-scale-factor=1",
                "--no-first-run",
                "--disable-extensions",
                "--lang=en-US",
            ]
        });
        if let Some(chromium) = chromium {
            options["binary"] = json!(chromium);
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("no browser session from chromedriver: {e}"))
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            use nix::sys::signal::{Signal, killpg};
            use nix::unistd::Pid;
            let group = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.temp);
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// An API call with the token, answered with `status`.
async fn api(serve: &Serve, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    let url = format!("{}{path}", serve.base);
    let reply = request(method, &url, body, Some(TOKEN)).await.unwrap();
    assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
    reply.body
}

/// The page is no wider than the window: nothing to scroll sideways.
async fn assert_no_horizontal_scroll(browser: &Client) {
    let widths = browser
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    let (scroll, inner) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
    assert!(scroll <= inner, "horizontal scroll: {scroll} > {inner}");
}

/// The id of the hook whose URL ends with `path`.
async fn hook_of(serve: &Serve, path: &str) -> String {
    let hooks = api(serve, "GET", "/v1/hooks", None, 200).await;
    let hook = hooks["hooks"].as_array().unwrap().iter().find(|h| {
        h["parameters"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with(path))
    });
    hook.unwrap_or_else(|| panic!("no hook posts to {path}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits (bounded) until `check` answers `Some`.
async fn until<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element `css` finds, if any.
async fn text_of(browser: &Client, css: &str) -> Option<String> {
    let element: Element = browser.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

/// The state the deliveries table shows for delivery `id`.
async fn row_state(browser: &Client, id: u64) -> Option<String> {
    text_of(
        browser,
        &format!("tr[data-delivery=\"{id}\"] [data-field=\"state\"]"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_replays_a_failed_delivery_in_a_real_browser() {
    // The receiver says why it fails, as a real one would, until it is back.
    let back = Arc::new(AtomicBool::new(false));
    let flaky = Receiver::start_with_body({
        let back = back.clone();
        move |_, _| {
            if back.load(Ordering::SeqCst) {
                ((200, vec![]), b"ok".to_vec())
            } else {
                ((500, vec![]), FAILURE.as_bytes().to_vec())
            }
        }
    })
    .await;
    let steady = Receiver::start(|_, _| (200, vec![])).await;
    // 410 Gone disables its hook; its deliveries wait for an enable.
    let (gone, returned) = switchable(410).await;
    let hooks = hooks_file(
        "ui",
        json!([
            plan_hook(flaky.url("/lab-log")),
            plan_hook(steady.url("/notify")),
            plan_hook(gone.url("/archive"))
        ]),
    );
    let serve = Serve::start(&[
        "--hooks",
        &hooks,
        "--store",
        &store("ui"),
        "--token",
        TOKEN,
        // One retry, then failed.
        "--retry-schedule",
        "20ms",
    ])
    .await;
    let mut failing = Vec::new();
    let (lab_log, archive) = (
        hook_of(&serve, "/lab-log").await,
        hook_of(&serve, "/archive").await,
    );
    for n in 1..=2 {
        let accepted = api(&serve, "POST", "/v1/events", Some(plan(n)), 202).await;
        let first = accepted["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["hook"] == lab_log.as_str())
            .unwrap();
        failing.push((
            first["id"].as_u64().unwrap(),
            first["webhook_id"].as_str().unwrap().to_string(),
        ));
    }
    until("the 410 disables the archive's hook", || async {
        let hook = api(&serve, "GET", &format!("/v1/hooks/{archive}"), None, 200).await;
        (hook["state"]["enabled"] == false).then_some(())
    })
    .await;
    for (id, _) in &failing {
        until(
            "the deliveries to the receiver answering 500 fail",
            || async {
                let d = api(&serve, "GET", &format!("/v1/deliveries/{id}"), None, 200).await;
                (d["state"] == "failed").then_some(())
            },
        )
        .await;
    }
    let (id, webhook_id) = failing[0].clone();

    let driver = Chromedriver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{}/", serve.base)).await.unwrap();
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/ui",
        "/ redirects to the dashboard"
    );

    // The API answers 401: the page asks for the token.
    let field = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#token-form:not([hidden]) #token"))
        .await
        .expect("the page asks for the token");
    // By keyboard: the token, then Enter submits the form.
    field
        .send_keys(&format!("{TOKEN}{}", char::from(Key::Enter)))
        .await
        .unwrap();

    until("the page lists the failed delivery", || async {
        (row_state(&browser, id).await.as_deref() == Some("failed")).then_some(())
    })
    .await;
    let form = browser.find(Locator::Id("token-form")).await.unwrap();
    assert!(
        !form.is_displayed().await.unwrap(),
        "the token form is gone once the token works"
    );
    let hooks_shown = browser
        .find_all(Locator::Css("#workflows tr[data-hook]"))
        .await
        .unwrap();
    assert_eq!(hooks_shown.len(), 3, "every hook is listed");

    // "Token…", then "Cancel": the token in use stays, and the page goes on updating.
    for button in ["change-token", "token-cancel"] {
        browser
            .find(Locator::Id(button))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    until("the page updates again after Cancel", || async {
        let status = text_of(&browser, "#live-status").await?;
        status.starts_with("Live").then_some(())
    })
    .await;

    // The receiver is back; replay from the page, by keyboard (Enter on the focused button).
    back.store(true, Ordering::SeqCst);
    browser
        .find(Locator::Css(&format!(
            "tr[data-delivery=\"{id}\"] button[data-action=\"replay\"]"
        )))
        .await
        .expect("a Replay button on the failed delivery")
        .send_keys(&char::from(Key::Enter).to_string())
        .await
        .unwrap();
    until("the page shows the delivery delivered", || async {
        (row_state(&browser, id).await.as_deref() == Some("delivered")).then_some(())
    })
    .await;
    assert_eq!(
        row_state(&browser, failing[1].0).await.as_deref(),
        Some("failed"),
        "the other failed delivery was left alone"
    );

    // The receiver got it again, same webhook-id, and the API agrees.
    let got = flaky
        .received()
        .iter()
        .filter(|r| r.header("webhook-id") == Some(webhook_id.as_str()))
        .count();
    assert_eq!(got, 3, "two failed attempts, then the replay");
    let detail = api(&serve, "GET", &format!("/v1/deliveries/{id}"), None, 200).await;
    assert_eq!(detail["state"], "delivered");
    assert_eq!(detail["attempt_log"][2]["status"], 200);

    // Its attempts, in the page.
    browser
        .find(Locator::Css(&format!(
            "tr[data-delivery=\"{id}\"] button[data-action=\"view\"]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let attempts = until("the page shows its three attempts", || async {
        let items = browser
            .find_all(Locator::Css("#detail-body li[data-attempt]"))
            .await
            .ok()?;
        let mut texts = Vec::new();
        for item in items {
            texts.push(item.text().await.ok()?);
        }
        (texts.len() == 3).then_some(texts)
    })
    .await;
    assert!(attempts[0].contains("500"), "{attempts:?}");
    assert!(attempts[2].contains("200"), "{attempts:?}");
    // The receiver's answers and the event body are on the page.
    let shown = until("the page shows the receiver's answer", || async {
        let answers = browser
            .find_all(Locator::Css("#detail-body li[data-attempt] pre"))
            .await
            .ok()?;
        let mut texts = Vec::new();
        for answer in answers {
            texts.push(answer.prop("textContent").await.ok()??);
        }
        (texts.len() == 3).then_some(texts)
    })
    .await;
    assert_eq!(shown[0], FAILURE);
    assert_eq!(shown[2], "ok");
    let event = request(
        "GET",
        &format!("{}/v1/events/{}", serve.base, detail["event"]),
        None,
        Some(TOKEN),
    )
    .await
    .unwrap();
    assert_eq!(event.status, 200, "{:?}", event.body);
    let body = until("the page shows the event body", || async {
        text_of(&browser, "#detail-body pre.event-body").await
    })
    .await;
    assert!(body.contains("\"plan_id\": \"p1\""), "{body}");

    // A laptop screen shows it without scrolling sideways.
    assert_no_horizontal_scroll(&browser).await;

    // The picture: the page from its top, the delivery's attempts beside the list.
    browser
        .execute("window.scrollTo(0, 0);", vec![])
        .await
        .unwrap();
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = if std::env::var_os("LINQ_HOOKS_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png")
    } else {
        std::env::temp_dir().join(format!("linq-hooks-dashboard-{}.png", std::process::id()))
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());

    // The archive is back: enable its hook from the page; its two deliveries go out.
    let archive_state = format!("tr[data-hook=\"{archive}\"] [data-field=\"hook-state\"]");
    assert_eq!(
        text_of(&browser, &archive_state).await.as_deref(),
        Some("disabled (410)")
    );
    returned.store(true, Ordering::SeqCst);
    browser
        .find(Locator::Css(&format!(
            "tr[data-hook=\"{archive}\"] button[data-action=\"enable\"]"
        )))
        .await
        .expect("an Enable button on the disabled hook")
        .click()
        .await
        .unwrap();
    until("the page shows the hook enabled", || async {
        (text_of(&browser, &archive_state).await.as_deref() == Some("enabled")).then_some(())
    })
    .await;
    until("the archive gets both events", || async {
        let mut plans: Vec<String> = gone
            .received()
            .iter()
            .filter(|r| r.path == "/archive")
            .map(|r| r.json()["plan_id"].as_str().unwrap().to_string())
            .collect();
        plans.dedup();
        (plans.ends_with(&["p1".into(), "p2".into()])).then_some(())
    })
    .await;

    // The filters: failed ones only.
    browser
        .find(Locator::Id("f-state"))
        .await
        .unwrap()
        .select_by_value("failed")
        .await
        .unwrap();
    browser
        .find(Locator::Css("#filters button[type=\"submit\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let listed = until("only failed deliveries are listed", || async {
        let rows = browser
            .find_all(Locator::Css("#deliveries tr[data-delivery]"))
            .await
            .ok()?;
        let mut listed = Vec::new();
        for row in rows {
            let id = row.attr("data-delivery").await.ok()??;
            let state = row
                .find(Locator::Css("[data-field=\"state\"]"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            listed.push((id.parse::<u64>().ok()?, state));
        }
        (listed.iter().all(|(_, state)| state == "failed")).then_some(listed)
    })
    .await;
    assert_eq!(listed, vec![(failing[1].0, "failed".to_string())]);

    // Recover the hook's failed deliveries since a time from the page: the one left failed goes
    // out again, with its webhook-id.
    let (left, left_webhook_id) = failing[1].clone();
    browser
        .find(Locator::Id("recover-hook"))
        .await
        .unwrap()
        .select_by_value(&lab_log)
        .await
        .unwrap();
    // A date picker's typing differs by locale; its value is the same everywhere.
    browser
        .execute(
            "document.getElementById('recover-since').value = '2000-01-01T00:00:00';",
            vec![],
        )
        .await
        .unwrap();
    browser
        .find(Locator::Css("#recover-form button[type=\"submit\"]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the page lists no failed delivery", || async {
        let rows = browser
            .find_all(Locator::Css("#deliveries tr[data-delivery]"))
            .await
            .ok()?;
        rows.is_empty().then_some(())
    })
    .await;
    until("the recovered delivery arrives", || async {
        let got = flaky
            .received()
            .iter()
            .filter(|r| r.header("webhook-id") == Some(left_webhook_id.as_str()))
            .count();
        (got == 3).then_some(())
    })
    .await;
    until("it is delivered", || async {
        let d = api(&serve, "GET", &format!("/v1/deliveries/{left}"), None, 200).await;
        (d["state"] == "delivered").then_some(())
    })
    .await;

    // Long values (the longest workflow id there may be, a long URL) wrap; nothing widens the page.
    let long_id = "w".repeat(128);
    let long_url = format!("http://127.0.0.1:9/{}", "segment".repeat(40));
    api(
        &serve,
        "PUT",
        &format!("/v1/workflows/{long_id}"),
        Some(json!({"hooks": [{"filter": "on_new_plan", "parameters": {"url": long_url}}]})),
        201,
    )
    .await;
    until("the page lists the new workflow", || async {
        let ids = browser
            .find_all(Locator::Css("#workflows .workflow h3 code"))
            .await
            .ok()?;
        (ids.len() == 2).then_some(())
    })
    .await;
    assert_no_horizontal_scroll(&browser).await;

    browser.close().await.unwrap();
    drop(driver);
    serve.kill().await;
}
