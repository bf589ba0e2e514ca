//! One MQTT connection to a broker and the PUBACKs it waits for.
//!
//! rumqttc's event loop reports each QoS 1 publish it sends (`Outgoing::Publish(pkid)`) in the
//! order the publishes were queued, then the PUBACK for each packet id. A publish's waiter is
//! queued under the same lock as the publish itself, so the n-th waiter is the n-th publish;
//! when the packet id is known it moves to the map of waiters by packet id.
//!
//! The event loop is never polled again after an error: the connection is then lost, every
//! waiter hears so (whether a publish in flight arrived is unknown, so it is sent again by the
//! caller's retry), and the next publish to the broker opens a new connection. A publish is
//! thus never sent again behind the caller's back, out of its order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use linq_hooks_transport::Bytes;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet, PubAck, PublishProperties};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use tokio::sync::oneshot;

/// How many publishes may wait in rumqttc's queue before `publish` waits.
const QUEUE: usize = 64;

/// The answer to one publish.
pub(crate) enum Ack {
    /// The broker's PUBACK.
    PubAck(PubAck),
    /// The connection was lost before it came.
    Lost(Lost),
}

/// Why a connection ended.
#[derive(Clone, Debug)]
pub(crate) enum Lost {
    /// The broker answered CONNECT with a refusal.
    Refused(ConnectReturnCode),
    /// The TLS handshake failed.
    Tls(String),
    /// Anything else: the connection could not be made, or broke.
    Connect(String),
}

impl Lost {
    fn of(error: &ConnectionError) -> Lost {
        match error {
            ConnectionError::ConnectionRefused(code) => Lost::Refused(*code),
            ConnectionError::Tls(e) => Lost::Tls(e.to_string()),
            ConnectionError::Timeout(_) => Lost::Connect("timed out connecting".into()),
            e => Lost::Connect(e.to_string()),
        }
    }
}

#[derive(Default)]
struct Waiters {
    lost: Option<Lost>,
    /// Publishes queued, not yet sent: their waiters in queue order.
    queued: VecDeque<oneshot::Sender<Ack>>,
    /// Publishes sent, by packet id.
    sent: HashMap<u16, oneshot::Sender<Ack>>,
}

/// A connection to one broker with one set of credentials, shared by every hook that
/// publishes there.
pub(crate) struct Connection {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    /// Held from queuing a waiter to queuing its publish, so that both queues keep one order.
    order: tokio::sync::Mutex<()>,
    driver: tokio::task::AbortHandle,
}

impl Connection {
    /// Starts connecting (in a task of the current runtime); publishes wait until connected.
    pub(crate) fn open(options: MqttOptions) -> Connection {
        let (client, eventloop) = AsyncClient::new(options, QUEUE);
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let driver = tokio::spawn(drive(eventloop, waiters.clone())).abort_handle();
        Connection {
            client,
            waiters,
            order: tokio::sync::Mutex::new(()),
            driver,
        }
    }

    /// True once the connection has ended; a new one must be opened.
    pub(crate) fn is_lost(&self) -> bool {
        lock(&self.waiters).lost.is_some()
    }

    /// Queues a QoS 1 publish and returns where its PUBACK (or the loss of the connection)
    /// will be told.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        properties: PublishProperties,
    ) -> Result<oneshot::Receiver<Ack>, Lost> {
        let _order = self.order.lock().await;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = lock(&self.waiters);
            if let Some(lost) = &waiters.lost {
                return Err(lost.clone());
            }
            waiters.queued.push_back(tx);
        }
        let queued = self
            .client
            .publish_bytes_with_properties(topic, QoS::AtLeastOnce, false, payload, properties)
            .await;
        if let Err(e) = queued {
            // Not queued: take the waiter back. It is the last one, as the order lock is held,
            // unless the connection was lost meanwhile and every waiter was told already.
            let mut waiters = lock(&self.waiters);
            if waiters.lost.is_none() {
                waiters.queued.pop_back();
            }
            return Err(waiters
                .lost
                .clone()
                .unwrap_or_else(|| Lost::Connect(format!("could not queue the publish: {e}"))));
        }
        Ok(rx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn lock(waiters: &Mutex<Waiters>) -> MutexGuard<'_, Waiters> {
    // A panic while holding the lock leaves the maps consistent (each step is one insert or
    // remove), so a poisoned lock is used as it is.
    waiters
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls the event loop until the connection ends, matching PUBACKs to their waiters.
async fn drive(mut eventloop: EventLoop, waiters: Arc<Mutex<Waiters>>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let mut waiters = lock(&waiters);
                if let Some(tx) = waiters.queued.pop_front() {
                    waiters.sent.insert(pkid, tx);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(tx) = lock(&waiters).sent.remove(&ack.pkid) {
                    // The caller may have stopped waiting (its time ran out).
                    let _ = tx.send(Ack::PubAck(ack));
                }
            }
            Ok(_) => {}
            Err(error) => {
                let lost = Lost::of(&error);
                tracing::debug!(error = error.to_string().as_str(), "MQTT connection ended");
                let mut waiters = lock(&waiters);
                waiters.lost = Some(lost.clone());
                let queued: Vec<_> = waiters.queued.drain(..).collect();
                let sent: Vec<_> = waiters.sent.drain().map(|(_, tx)| tx).collect();
                for tx in queued.into_iter().chain(sent) {
                    let _ = tx.send(Ack::Lost(lost.clone()));
                }
                return;
            }
        }
    }
}
