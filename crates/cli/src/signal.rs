//! The signals that stop a long-running command (`listen`, `serve`): one place for all of them.

use std::future::Future;

/// A future that completes on SIGTERM or SIGINT (Ctrl-C) on Unix, on Ctrl-C elsewhere.
///
/// Not an `async fn` on purpose: the handlers are installed by this call, not when the future
/// is first polled. Call it before the port accepts connections, and a SIGTERM from then on is
/// a clean stop rather than the default action (the process killed mid-request). Fails only
/// when a handler cannot be installed.
#[cfg(unix)]
pub(crate) fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// A future that completes on SIGTERM or SIGINT (Ctrl-C) on Unix, on Ctrl-C elsewhere.
///
/// Off Unix there is only Ctrl-C, whose handler is installed when the future is first polled.
#[cfg(not(unix))]
pub(crate) fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler: Ctrl-C ends the process as it would have anyway.
            std::future::pending::<()>().await;
        }
    })
}

/// Reload requests for `serve`: SIGHUP on Unix; none elsewhere.
pub(crate) struct Hangups {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangups {
    /// Installs the SIGHUP handler now (so that a SIGHUP from then on is a reload, not the
    /// default action, which ends the process).
    pub(crate) fn new() -> std::io::Result<Hangups> {
        Ok(Hangups {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }

    /// Waits for the next SIGHUP.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        {
            self.signal.recv().await;
        }
        #[cfg(not(unix))]
        {
            std::future::pending::<()>().await;
        }
    }
}
