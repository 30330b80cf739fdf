//! Events and their delivery as signed webhooks (Standard Webhooks).
//!
//! A change raises its event with [`enqueue_in`] inside the write transaction that makes the
//! change: the event and one delivery per subscribed endpoint are written to the outbox with it,
//! or not at all. Every replica runs a [`delivery`] worker that claims due deliveries (`SKIP
//! LOCKED` on PostgreSQL), signs and sends them, and retries failures on the configured schedule.
//! Payloads carry ids, provider, status and counts: never tokens, CI/DI or other personal data.

pub mod delivery;
pub mod signing;
pub mod url_guard;

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use crate::store::{webhooks as store, Db, StoreError, WriteTx};

/// Every event type, as sent in `type` (and accepted in an endpoint's `events` filter).
pub const EVENT_TYPES: &[&str] = &[
    "connection.created",
    "connection.updated",
    "connection.needs_reauth",
    "connection.disconnected",
    "verification.completed",
    "transactions.updated",
    "webhook.test",
];

/// An event. The fields are what the payload's `data` holds.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Event {
    ConnectionCreated {
        connection_id: String,
        user_id: String,
        provider: String,
        status: String,
    },
    /// The connection's label or its accounts changed; `changed` names which, `accounts` counts them.
    ConnectionUpdated {
        connection_id: String,
        user_id: String,
        provider: String,
        status: String,
        changed: Vec<String>,
        accounts: Option<i64>,
    },
    ConnectionNeedsReauth {
        connection_id: String,
        user_id: String,
        provider: String,
        status: String,
    },
    ConnectionDisconnected {
        connection_id: String,
        user_id: String,
        provider: String,
    },
    /// An identity verification (Toss) finished and its result is stored; the identity itself is
    /// never in the event.
    VerificationCompleted {
        user_id: String,
        provider: String,
        tx_id: String,
        request_type: String,
        status: String,
    },
    TransactionsUpdated {
        connection_id: String,
        user_id: String,
        provider: String,
        accounts: i64,
        new_transactions: i64,
    },
    WebhookTest {
        endpoint_id: String,
    },
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::ConnectionCreated { .. } => "connection.created",
            Event::ConnectionUpdated { .. } => "connection.updated",
            Event::ConnectionNeedsReauth { .. } => "connection.needs_reauth",
            Event::ConnectionDisconnected { .. } => "connection.disconnected",
            Event::VerificationCompleted { .. } => "verification.completed",
            Event::TransactionsUpdated { .. } => "transactions.updated",
            Event::WebhookTest { .. } => "webhook.test",
        }
    }

    /// Events with the same key reach each endpoint in the order they were raised: one
    /// connection's events by its id, one user's verifications by the user.
    pub fn ordering_key(&self) -> Option<String> {
        match self {
            Event::ConnectionCreated { connection_id, .. }
            | Event::ConnectionUpdated { connection_id, .. }
            | Event::ConnectionNeedsReauth { connection_id, .. }
            | Event::ConnectionDisconnected { connection_id, .. }
            | Event::TransactionsUpdated { connection_id, .. } => Some(format!("connection:{connection_id}")),
            Event::VerificationCompleted { user_id, provider, .. } => Some(format!("verification:{provider}:{user_id}")),
            Event::WebhookTest { .. } => None,
        }
    }

    /// The endpoint a test event is for (others go to every subscribed endpoint).
    fn only_endpoint(&self) -> Option<&str> {
        match self {
            Event::WebhookTest { endpoint_id } => Some(endpoint_id),
            _ => None,
        }
    }
}

impl Event {
    /// `connection.created` or, for a re-consent of a connection that existed, `connection.updated`
    /// (`changed: ["consent"]`, with the KFTC account count).
    pub fn linked(c: &crate::store::connections::Connection, created: bool) -> Self {
        if created {
            return Event::ConnectionCreated {
                connection_id: c.id.clone(),
                user_id: c.user_id.clone(),
                provider: c.provider.clone(),
                status: c.status.clone(),
            };
        }
        Self::updated(c, &["consent"])
    }

    /// `connection.updated`: `changed` names what (`label`, `accounts`, `consent`).
    pub fn updated(c: &crate::store::connections::Connection, changed: &[&str]) -> Self {
        let accounts = (c.provider == "kftc").then(|| crate::providers::kftc::StoredAccount::from_metadata(&c.metadata).len() as i64);
        Event::ConnectionUpdated {
            connection_id: c.id.clone(),
            user_id: c.user_id.clone(),
            provider: c.provider.clone(),
            status: c.status.clone(),
            changed: changed.iter().map(|s| s.to_string()).collect(),
            accounts,
        }
    }

    /// `connection.needs_reauth`, with the state it is in now (`needs_reauth` or `consent_expired`).
    pub fn needs_reauth(c: &crate::store::connections::Connection, status: &str) -> Self {
        Event::ConnectionNeedsReauth { connection_id: c.id.clone(), user_id: c.user_id.clone(), provider: c.provider.clone(), status: status.into() }
    }

    pub fn disconnected(c: &crate::store::connections::Connection) -> Self {
        Event::ConnectionDisconnected { connection_id: c.id.clone(), user_id: c.user_id.clone(), provider: c.provider.clone() }
    }
}

/// The JSON body sent: `{"type", "id", "created_at", "data"}`.
pub fn payload(event: &Event, id: &str, now: i64) -> Value {
    json!({"type": event.event_type(), "id": id, "created_at": crate::http::rfc3339(now), "data": event})
}

/// Raises `event` inside `w`, the transaction of the change that caused it: it is delivered if and
/// only if the change commits. Returns the event id (`evt_…`, also the `webhook-id` header).
/// Call [`Webhooks::wake`] after the commit to deliver at once rather than at the next poll.
pub async fn enqueue_in(w: &mut WriteTx, event: &Event, now: i64) -> Result<String, StoreError> {
    let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let body = payload(event, &id, now).to_string();
    store::insert_event_in(w, &id, event.event_type(), event.ordering_key().as_deref(), &body, event.only_endpoint(), now).await?;
    Ok(id)
}

/// [`enqueue_in`] in a transaction of its own, for events whose change is already stored.
pub async fn enqueue(db: &Db, hooks: &Webhooks, event: &Event, now: i64) -> Result<String, StoreError> {
    let mut w = db.begin_write().await?;
    let id = enqueue_in(&mut w, event, now).await;
    let id = w.finish(id).await?;
    hooks.wake();
    Ok(id)
}

/// The process's handle on webhook delivery: the signal that wakes the worker.
#[derive(Default)]
pub struct Webhooks {
    wake: tokio::sync::Notify,
}

impl Webhooks {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Tells this process's worker that work may be due (an event was enqueued, a clock moved).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }
}
