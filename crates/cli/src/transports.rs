//! The transports `dispatch` and `serve` deliver with: each attempt goes to the one for its
//! hook URL's scheme (`linq_hooks_transport::ByScheme`): HTTP for `http`/`https`, MQTT for
//! `mqtt`/`mqtts`. The HTTP transport is built by `options::Sending`; this adds MQTT beside it.

use linq_hooks_mqtt::MqttTransport;
use linq_hooks_transport::ByScheme;

use crate::options::Sending;
use crate::output::errln;
use crate::{Outcome, report};

/// `--mqtt-credentials` (or `LINQ_HOOKS_MQTT_CREDENTIALS`).
#[derive(Debug, clap::Args)]
pub(crate) struct Mqtt {
    /// The user name and password for MQTT brokers, for hooks without an `Authorization:
    /// Basic <base64 of user:password>` header (which takes precedence). Credentials in a hook
    /// URL are refused. Without either, MQTT connections are anonymous.
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        env = "LINQ_HOOKS_MQTT_CREDENTIALS",
        hide_env_values = true
    )]
    mqtt_credentials: Option<String>,
}

/// The HTTP transport of `sending` and the MQTT transport with the same timeout, extra CA and
/// egress policy, routed by scheme. Problems are printed on stderr (never the credentials).
pub(crate) fn by_scheme(sending: &Sending, mqtt: &Mqtt) -> Result<ByScheme, Outcome> {
    let extra_root_pem = sending.extra_root_pem()?;
    let http = sending.transport(extra_root_pem.as_deref())?;
    let mut builder = MqttTransport::builder()
        .timeout(sending.timeout)
        .egress(sending.egress());
    if let Some(pair) = &mqtt.mqtt_credentials {
        let Some((user, password)) = pair.split_once(':') else {
            errln!("error: --mqtt-credentials: expected USER:PASSWORD (no `:` found)");
            return Err(Outcome::UsageOrIo);
        };
        builder = builder.credentials(user, password);
    }
    if let Some(pem) = &extra_root_pem {
        builder = builder.extra_root_pem(pem);
    }
    let mqtt = builder.build().map_err(|e| {
        errln!("error: cannot set up MQTT: {}", report::chain(&e));
        Outcome::UsageOrIo
    })?;
    Ok(ByScheme::new()
        .route(["http", "https"], http)
        .route(linq_hooks_mqtt::SCHEMES, mqtt))
}

#[cfg(test)]
mod tests {
    /// What validation accepts is what is routed: a hook that validates has a transport.
    #[test]
    fn the_model_accepts_exactly_the_schemes_routed() {
        let routed: Vec<&str> = ["http", "https"]
            .into_iter()
            .chain(linq_hooks_mqtt::SCHEMES)
            .collect();
        assert_eq!(routed, linq_hooks_model::URL_SCHEMES);
    }
}
