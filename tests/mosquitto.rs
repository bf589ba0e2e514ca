//! A real MQTT broker for tests: Debian's `mosquitto`, one process per test on a free port of
//! 127.0.0.1, stopped (and started again) at will, killed when dropped.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `mosquitto` with its own configuration and directory.
///
/// The configuration is `listener PORT 127.0.0.1`, `allow_anonymous true`, `persistence false`
/// and whatever [`Mosquitto::start_with`] adds (a later line wins). The binary is `$MOSQUITTO`,
/// else `mosquitto` on the `PATH`, else `/usr/sbin/mosquitto`; when there is none the test
/// fails and says how to install it (`.ci/run` does).
///
/// ```no_run
/// let broker = linq_hooks_tests::Mosquitto::start();
/// assert!(broker.url("lab/runs").starts_with("mqtt://127.0.0.1:"));
/// ```
pub struct Mosquitto {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// An anonymous broker without persistence.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with("")
    }

    /// A broker with `extra` appended to its configuration. `{dir}` in `extra` is replaced by
    /// the broker's own directory (for `persistence_location {dir}/`, `password_file {dir}/…`).
    pub fn start_with(extra: &str) -> Mosquitto {
        Mosquitto::start_with_users(extra, &[])
    }

    /// A broker that refuses anonymous clients and knows these users (user, password), with
    /// `extra` appended to its configuration.
    pub fn start_authenticated(users: &[(&str, &str)], extra: &str) -> Mosquitto {
        let extra = format!("allow_anonymous false\npassword_file {{dir}}/passwords\n{extra}");
        Mosquitto::start_with_users(&extra, users)
    }

    fn start_with_users(extra: &str, users: &[(&str, &str)]) -> Mosquitto {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "linq-hooks-mosquitto-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory for mosquitto");
        let dir_text = dir.to_str().expect("a UTF-8 temporary directory");
        // `user root`: as root (CI), mosquitto would otherwise switch to the user `mosquitto`,
        // who cannot write here; for anyone else the line has no effect.
        let config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n\
             log_dest file {dir_text}/mosquitto.log\n{}\n",
            extra.replace("{dir}", dir_text)
        );
        std::fs::write(dir.join("mosquitto.conf"), config).expect("writing mosquitto.conf");
        for (user, password) in users {
            add_user(&dir, user, password);
        }
        let mut broker = Mosquitto {
            port,
            dir,
            child: None,
        };
        broker.restart();
        broker
    }

    /// The binary used; panics with how to install it when there is none.
    pub fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os("MOSQUITTO") {
            return PathBuf::from(path);
        }
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join("mosquitto"))
            .find(|path| path.is_file());
        let fallback = PathBuf::from("/usr/sbin/mosquitto");
        match on_path {
            Some(path) => path,
            None if fallback.is_file() => fallback,
            None => panic!(
                "the MQTT tests need the mosquitto broker, which is not installed: \
                 `apt-get install -y mosquitto` (Debian; .ci/run does it), or set MOSQUITTO \
                 to its path"
            ),
        }
    }

    /// The port it listens on, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT/topic`.
    pub fn url(&self, topic: &str) -> String {
        format!("mqtt://127.0.0.1:{}/{topic}", self.port)
    }

    /// The broker's own directory (configuration, log, persistence, password file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops it with SIGTERM, so that a broker with persistence saves its sessions and queued
    /// messages, and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// (Re)starts it on its port and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(Mosquitto::binary())
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", Mosquitto::binary().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            let child = self.child.as_mut().expect("started");
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!(
                    "mosquitto exited ({status}) on port {}: {stderr}{}",
                    self.port,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on port {} within 20 s: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// Adds `user` with `password` to `dir/passwords` with `mosquitto_passwd` (beside the
/// broker's binary, or Debian's).
fn add_user(dir: &Path, user: &str, password: &str) {
    let file = dir.join("passwords");
    let tool = [
        Mosquitto::binary()
            .parent()
            .map(|d| d.join("mosquitto_passwd")),
        Some(PathBuf::from("/usr/bin/mosquitto_passwd")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
    .unwrap_or_else(|| PathBuf::from("mosquitto_passwd"));
    let mut command = Command::new(tool);
    command.arg("-b");
    if !file.exists() {
        command.arg("-c");
    }
    let status = command
        .arg(&file)
        .args([user, password])
        .status()
        .expect("mosquitto_passwd runs (Debian's mosquitto package has it)");
    assert!(status.success(), "mosquitto_passwd failed");
}
