//! The change bus: after a commit, a replica announces the change's revision;
//! every replica (itself included) then catches up from the change log.
//!
//! Embedded mode uses an in-process broadcast. With Redis, events travel on the
//! pub/sub channel `{prefix}feature_flags_events` as JSON
//! (`{"revision":7,"entity":"flag","flag_key":"x"}`). Redis drops messages while
//! a subscriber is disconnected, so the subscriber emits [`BusMessage::Resync`]
//! after every (re)subscription, and the follower (`follower.rs`) also polls: a lost
//! message costs latency, never a change.

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{changelog::Committed, telemetry::metrics};

/// The channel name, after the configured prefix.
pub const CHANNEL: &str = "feature_flags_events";

/// A committed change, announced by the replica that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The change's global revision.
    pub revision: i64,
    /// `tenant`, `flag` or `override`.
    pub entity: String,
    /// The tenant the change is confined to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The flag concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag_key: Option<String>,
}

impl From<&Committed> for ChangeEvent {
    fn from(c: &Committed) -> ChangeEvent {
        ChangeEvent {
            revision: c.revision,
            entity: c.kind.entity().to_owned(),
            tenant_id: c.tenant_id.clone(),
            flag_key: c.flag_key.clone(),
        }
    }
}

/// What a bus subscriber receives.
#[derive(Debug, Clone)]
pub enum BusMessage {
    /// A change was committed somewhere.
    Event(ChangeEvent),
    /// Messages may have been lost (a reconnect): reload from the change log.
    Resync,
}

/// The bus of one replica. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    local: broadcast::Sender<BusMessage>,
    redis: Option<(ConnectionManager, String)>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("redis_channel", &self.redis.as_ref().map(|(_, c)| c))
            .finish()
    }
}

impl Bus {
    /// An in-process bus.
    pub fn in_process() -> Bus {
        Bus {
            local: broadcast::channel(1024).0,
            redis: None,
        }
    }

    /// A Redis pub/sub bus on `{prefix}feature_flags_events`; spawns the
    /// subscriber, which reconnects until `stop` is cancelled.
    pub fn redis(
        client: redis::Client,
        publisher: ConnectionManager,
        prefix: &str,
        stop: CancellationToken,
    ) -> Bus {
        let channel = format!("{prefix}{CHANNEL}");
        let local = broadcast::channel(1024).0;
        tokio::spawn(subscribe_loop(client, channel.clone(), local.clone(), stop));
        Bus {
            local,
            redis: Some((publisher, channel)),
        }
    }

    /// Announces a committed change. A failed publish is logged; the other
    /// replicas still learn of the change by polling the change log.
    pub async fn publish(&self, event: &ChangeEvent) {
        metrics::event_published();
        match &self.redis {
            None => {
                let _ = self.local.send(BusMessage::Event(event.clone()));
            }
            Some((conn, channel)) => {
                let Ok(json) = serde_json::to_string(event) else {
                    return;
                };
                let mut conn = conn.clone();
                let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(json)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, revision = event.revision, "publish failed; replicas will catch up by polling");
                }
            }
        }
    }

    /// Subscribes to every message from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BusMessage> {
        self.local.subscribe()
    }
}

async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    local: broadcast::Sender<BusMessage>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let pubsub = tokio::select! {
            r = attempt => r,
            () = stop.cancelled() => return,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = Duration::from_millis(50);
                tracing::debug!(%channel, "subscribed");
                // Anything published while we were away is only in the change log.
                let _ = local.send(BusMessage::Resync);
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        () = stop.cancelled() => return,
                    };
                    let Some(msg) = msg else { break };
                    match serde_json::from_slice::<ChangeEvent>(msg.get_payload_bytes()) {
                        Ok(ev) => {
                            let _ = local.send(BusMessage::Event(ev));
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed bus message"),
                    }
                }
                tracing::warn!(%channel, "redis subscription lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, ?backoff, "redis subscribe failed; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {},
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
