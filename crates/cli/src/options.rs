//! Options that several commands share, defined once.

use std::path::PathBuf;
use std::time::Duration;

use linq_hooks_http::HttpTransport;
use linq_hooks_signature::Secret;

use crate::{Outcome, report};

/// `--secret` (or `LINQ_HOOKS_SECRET`): what `dispatch` and `serve` sign with and `listen`
/// checks against.
#[derive(Debug, clap::Args)]
pub(crate) struct Secrets {
    /// A Standard Webhooks secret, `whsec_` followed by base64. Repeat it (or separate with
    /// commas) during a rotation: senders add one signature per secret, `listen` accepts any.
    #[arg(
        long = "secret",
        value_name = "whsec_...",
        env = "LINQ_HOOKS_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    values: Vec<String>,
}

impl Secrets {
    /// Parses the values here rather than in clap, whose errors quote the value: a secret with
    /// a typo is still a secret, and must not land in a terminal's scrollback or a CI log.
    pub(crate) fn parse(&self) -> Result<Vec<Secret>, Outcome> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                value.parse::<Secret>().map_err(|e| {
                    eprintln!("error: --secret number {}: {}", i + 1, report::chain(&e));
                    Outcome::UsageOrIo
                })
            })
            .collect()
    }
}

/// How `dispatch` and `serve` send: timeout, requests in flight, extra CAs.
#[derive(Debug, clap::Args)]
pub(crate) struct Sending {
    /// The time one request may take, connection and response included.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
    /// At most this many requests in flight, over all hooks.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) concurrency: u32,
    /// Trust the certificate authorities in this PEM file too (for receivers behind an
    /// internal CA), besides the platform's.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
}

impl Sending {
    /// The HTTP transport these options describe; the problem is printed on stderr. It keeps
    /// as many idle connections per host as requests may be in flight, so that hooks sharing
    /// a receiver reuse connections instead of opening new ones.
    pub(crate) fn transport(&self) -> Result<HttpTransport, Outcome> {
        let mut builder = HttpTransport::builder()
            .timeout(self.timeout)
            .pool_max_idle_per_host(self.concurrency as usize);
        if let Some(path) = &self.ca_file {
            match std::fs::read(path) {
                Ok(pem) => builder = builder.extra_root_pem(&pem),
                Err(e) => {
                    eprintln!(
                        "error: cannot read {}: {}",
                        path.display(),
                        report::chain(&e)
                    );
                    return Err(Outcome::UsageOrIo);
                }
            }
        }
        builder.build().map_err(|e| {
            eprintln!("error: cannot set up HTTP: {}", report::chain(&e));
            Outcome::UsageOrIo
        })
    }
}
