//! The delivery worker: one per replica, no leader. It claims due deliveries from the outbox (a
//! claim lasts [`CLAIM_SECS`]: a replica killed mid-delivery loses nothing, another one takes the
//! delivery over once the claim lapses), sends each signed, at most `QETTA_WEBHOOK_CONCURRENCY`
//! at once, and records the outcome: a 2xx is delivered; anything else, a timeout
//! ([`ATTEMPT_TIMEOUT`]) or a refused address is retried on `QETTA_WEBHOOK_RETRY_SCHEDULE` with
//! jitter and given up after its last entry; `410 Gone` disables the endpoint, and so does a run of
//! failures longer than [`DISABLE_AFTER_SECS`] (both audited). It drains back to back while work is
//! due and sleeps only when idle, until the next delivery is due, [`POLL`] at most (for work other
//! replicas enqueued), or until [`Webhooks::wake`] is called in this process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use secrecy::SecretString;
use serde_json::json;
use tokio::task::JoinSet;

use super::signing;
use super::url_guard::{self, UrlError};
use super::Webhooks;
use crate::clock::Clock;
use crate::config::WebhookSettings;
use crate::store::audit::NewEntry;
use crate::store::webhooks::{self as store, Attempt, Claimed, Endpoint};
use crate::store::Db;
use crate::vault::{Aad, Vault};

/// How long a claim lasts: well past an attempt's timeout.
pub const CLAIM_SECS: i64 = 60;
/// One attempt's limit (connect, send, answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// An endpoint that has failed without a success for this long is disabled.
pub const DISABLE_AFTER_SECS: i64 = 3 * 86400;
/// The longest idle sleep.
pub const POLL: Duration = Duration::from_secs(1);
/// Finished deliveries are kept this long (for the deliveries list and manual retries).
pub const KEEP_SECS: i64 = 30 * 86400;
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Response bodies are read up to this many bytes, then dropped.
const MAX_RESPONSE_BYTES: usize = 4096;

pub const DELIVERIES: &str = "qetta_webhook_deliveries_total";
pub const ATTEMPT_DURATION: &str = "qetta_webhook_attempt_duration_seconds";

/// The vault address of an endpoint's secret (`secret` or `previous_secret`).
pub fn secret_aad<'a>(endpoint_id: &'a str, field: &'a str) -> Aad<'a> {
    Aad { row: endpoint_id, scope: "webhook_endpoint", field }
}

/// What the worker needs.
#[derive(Clone)]
pub struct Worker {
    pub db: Db,
    pub vault: Vault,
    pub clock: Arc<dyn Clock>,
    pub settings: WebhookSettings,
    pub hooks: Arc<Webhooks>,
    client: reqwest::Client,
    owner: Arc<str>,
}

impl Worker {
    pub fn new(db: Db, vault: Vault, clock: Arc<dyn Clock>, settings: WebhookSettings, hooks: Arc<Webhooks>) -> Self {
        let client = url_guard::delivery_client(settings.allow_private, ATTEMPT_TIMEOUT);
        let owner: Arc<str> = format!("replica-{}", uuid::Uuid::new_v4().simple()).into();
        Self { db, vault, clock, settings, hooks, client, owner }
    }
}

/// Runs until `stop` turns true. Deliveries in flight then are dropped; their claims lapse and
/// they are sent again (at least once).
pub async fn run(w: Worker, mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = crate::observability::handle();
    metrics::describe_counter!(DELIVERIES, "Webhook delivery attempts, by outcome.");
    metrics::describe_histogram!(ATTEMPT_DURATION, metrics::Unit::Seconds, "Time of one webhook delivery attempt, by outcome.");
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut last_prune = Instant::now();
    // A claim scans the pending queue, so slots are refilled in batches (a quarter of the
    // concurrency at least) rather than one by one as each delivery finishes.
    let refill_at = (w.settings.concurrency / 4).max(1);
    loop {
        if *stop.borrow() {
            break;
        }
        while in_flight.try_join_next().is_some() {}
        let free = w.settings.concurrency.saturating_sub(in_flight.len());
        let mut claimed = 0;
        if free >= refill_at || (free > 0 && in_flight.is_empty()) {
            let now = w.clock.now();
            match store::claim_due(&w.db, &w.owner, now, now + CLAIM_SECS, free as i64).await {
                Ok(batch) => {
                    claimed = batch.len();
                    for c in batch {
                        let w = w.clone();
                        in_flight.spawn(async move { deliver(&w, c).await });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: cannot claim deliveries; retrying"),
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            if let Err(e) = store::prune(&w.db, w.clock.now() - KEEP_SECS).await {
                tracing::warn!(error = %e, "webhooks: cannot prune old deliveries");
            }
        }
        if claimed > 0 && claimed == free {
            // A full batch: more may be due; claim again as soon as slots free up.
            in_flight.join_next().await;
            continue;
        }
        let idle_for = if in_flight.is_empty() { idle_wait(&w).await } else { POLL };
        tokio::select! {
            _ = stop.changed() => {}
            _ = w.hooks.woken() => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = tokio::time::sleep(idle_for) => {}
        }
    }
    in_flight.abort_all();
}

/// How long to sleep with nothing in flight: until the next delivery is due, at most [`POLL`].
async fn idle_wait(w: &Worker) -> Duration {
    match store::next_due(&w.db).await {
        Ok(Some(at)) => Duration::from_secs((at - w.clock.now()).clamp(0, POLL.as_secs() as i64) as u64).max(Duration::from_millis(50)),
        _ => POLL,
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Gone,
    Failed { status: Option<u16>, error: String },
}

async fn deliver(w: &Worker, c: Claimed) {
    let endpoint = match store::get_endpoint(&w.db, &c.endpoint_id).await {
        Ok(Some(e)) if e.enabled == 1 => e,
        Ok(_) => {
            let _ = store::release_claim(&w.db, c.seq, &w.owner).await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhooks: cannot read an endpoint; the claim will lapse");
            return;
        }
    };
    let now = w.clock.now();
    let started = Instant::now();
    let outcome = match secrets(w, &endpoint, now) {
        Ok(secrets) => attempt(w, &endpoint, &c, &secrets, now).await,
        Err(e) => {
            tracing::error!(error = %e, endpoint = %endpoint.id, "webhooks: cannot open an endpoint's secret");
            Outcome::Failed { status: None, error: "the endpoint's secret cannot be opened".into() }
        }
    };
    let label = match &outcome {
        Outcome::Delivered(_) => "delivered",
        Outcome::Gone => "gone",
        Outcome::Failed { status: Some(_), .. } => "http_error",
        Outcome::Failed { error, .. } if error.starts_with("blocked") => "blocked",
        Outcome::Failed { .. } => "network_error",
    };
    metrics::counter!(DELIVERIES, "outcome" => label).increment(1);
    metrics::histogram!(ATTEMPT_DURATION, "outcome" => label).record(started.elapsed().as_secs_f64());
    let now = w.clock.now();
    if let Err(e) = record(w, &endpoint, &c, outcome, now).await {
        // The claim lapses and the delivery is sent again: at least once.
        tracing::warn!(error = %e, "webhooks: cannot record a delivery attempt");
    }
}

fn secrets(w: &Worker, e: &Endpoint, now: i64) -> Result<Vec<SecretString>, crate::vault::VaultError> {
    let open = |sealed: &[u8], field: &str| -> Result<SecretString, crate::vault::VaultError> { w.vault.open_string(sealed, secret_aad(&e.id, field)) };
    let mut out = vec![open(&e.secret, "secret")?];
    if let (Some(prev), Some(until)) = (&e.previous_secret, e.previous_secret_until) {
        if until > now {
            out.push(open(prev, "previous_secret")?);
        }
    }
    Ok(out)
}

async fn attempt(w: &Worker, e: &Endpoint, c: &Claimed, secrets: &[SecretString], now: i64) -> Outcome {
    // The URL is checked again at every delivery; its host's addresses are checked by the
    // client's resolver, which is what the connection uses.
    let url = match url_guard::check_static(&e.url, w.settings.allow_private) {
        Ok(u) => u,
        Err(err) => return Outcome::Failed { status: None, error: format!("blocked: {err}") },
    };
    let signature = signing::signature_header(secrets, &c.event_id, now, c.payload.as_bytes());
    let sent = w
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &c.event_id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(c.payload.clone())
        .send()
        .await;
    match sent {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            // Read a little of the body (so the connection can be reused), never more.
            let mut read = 0usize;
            while read < MAX_RESPONSE_BYTES {
                match tokio::time::timeout(Duration::from_secs(2), resp.chunk()).await {
                    Ok(Ok(Some(chunk))) => read += chunk.len(),
                    _ => break,
                }
            }
            match status {
                200..=299 => Outcome::Delivered(status),
                410 => Outcome::Gone,
                _ => Outcome::Failed { status: Some(status), error: format!("answered HTTP {status}") },
            }
        }
        Err(err) => Outcome::Failed { status: None, error: describe(&err) },
    }
}

/// A short cause for `last_error`: never the URL's query (which may carry the app's own tokens).
fn describe(err: &reqwest::Error) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(u) = e.downcast_ref::<UrlError>() {
            return format!("blocked: {u}");
        }
        cur = e.source();
    }
    if err.is_timeout() {
        format!("timed out after {} s", ATTEMPT_TIMEOUT.as_secs())
    } else if err.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}

/// The next attempt after `attempts` failed ones, with up to 10% jitter (never earlier than the
/// schedule), or `None`: given up.
pub fn next_attempt(schedule: &[Duration], attempts: i64, now: i64) -> Option<i64> {
    let wait = schedule.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?.as_secs() as i64;
    let jitter = rand::thread_rng().gen_range(0..=wait / 10);
    Some(now + wait + jitter)
}

async fn record(w: &Worker, e: &Endpoint, c: &Claimed, outcome: Outcome, now: i64) -> Result<(), crate::store::StoreError> {
    let attempts = c.attempts + 1;
    match outcome {
        Outcome::Delivered(status) => {
            let a = Attempt { status: store::DELIVERED, status_code: Some(status.into()), error: None, next_attempt_at: now };
            store::record_attempt(&w.db, c.seq, &w.owner, &a, now).await?;
            store::note_success(&w.db, &e.id).await?;
        }
        Outcome::Gone => {
            let a = Attempt { status: store::FAILED, status_code: Some(410), error: Some("answered 410 Gone: endpoint disabled"), next_attempt_at: now };
            store::record_attempt(&w.db, c.seq, &w.owner, &a, now).await?;
            disable(w, &e.id, "gone", now).await?;
        }
        Outcome::Failed { status, error } => {
            let next = next_attempt(&w.settings.retry_schedule, attempts, now);
            let a = Attempt {
                status: if next.is_some() { store::PENDING } else { store::FAILED },
                status_code: status.map(i64::from),
                error: Some(&error),
                next_attempt_at: next.unwrap_or(now),
            };
            store::record_attempt(&w.db, c.seq, &w.owner, &a, now).await?;
            let since = store::note_failure(&w.db, &e.id, now).await?;
            if now - since >= DISABLE_AFTER_SECS {
                disable(w, &e.id, "failing", now).await?;
            }
        }
    }
    Ok(())
}

/// Disables an endpoint and audits it, in one transaction.
async fn disable(w: &Worker, endpoint_id: &str, reason: &str, now: i64) -> Result<(), crate::store::StoreError> {
    let mut tx = w.db.begin_write().await?;
    let work = async {
        if store::disable_endpoint_in(&mut tx, endpoint_id, reason, now).await? {
            let why = match reason {
                "gone" => "the endpoint answered 410 Gone",
                _ => "the endpoint has failed every delivery for three days",
            };
            let entry = NewEntry {
                actor: "service".into(),
                action: "webhook_endpoint_disabled".into(),
                outcome: reason.into(),
                detail: json!({"endpoint_id": endpoint_id, "reason": why}),
                ..Default::default()
            };
            crate::store::audit::append_in(&mut tx, &entry, now).await?;
            tracing::warn!(endpoint = %endpoint_id, reason, "webhooks: endpoint disabled");
        }
        Ok(())
    }
    .await;
    tx.finish(work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_with_jitter_and_an_end() {
        let s = [Duration::from_secs(5), Duration::from_secs(300)];
        for _ in 0..100 {
            assert_eq!(next_attempt(&s, 1, 1000), Some(1005), "10% of 5 s rounds to no jitter");
            let t = next_attempt(&s, 2, 1000).unwrap();
            assert!((1300..=1330).contains(&t), "{t}");
        }
        assert_eq!(next_attempt(&s, 3, 1000), None);
        assert_eq!(next_attempt(&s, 0, 1000), None);
    }
}
