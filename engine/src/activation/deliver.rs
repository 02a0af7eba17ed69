//! Sends each activation's pending batches, in order, and records every attempt in
//! `activation_log`.
//!
//! What is pending is read, never queued: for segment `S` activated to destination `D` at time
//! `A`, the members at `A` (the first delivery, all "entered") and each later refresh's enters
//! and exits, from `segment_members`. Each change time is cut into batches of the destination's
//! `batch_size` (a file destination writes one file per change time) with the id
//! `S.D.<change time, µs>.<k>` — the same after a restart — sent as the `Idempotency-Key`
//! header. A batch logged `delivered` is not sent again; the one window in which a batch can
//! be sent twice is a crash between the receiver's answer and the log row (a receiver that
//! honours the key drops the second). A failed attempt is retried with exponential backoff
//! (1 s, 2 s, 4 s … at most a minute) for as long as the activation exists; the activation's
//! later batches wait, so a receiver sees changes in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::prelude::SessionContext;
use tributary_catalog::builtin::{ACTIVATION_LOG, SEGMENT_MEMBERS, activation_log_schema};

use super::destination::{MessageFormat, Sink};
use super::payload::{self, Batch};
use super::{Activation, Destination, activations, destinations};
use crate::Engine;
use crate::error::Result;
use crate::identity::records::{as_int64, as_micros, as_utf8};
use crate::segments;
use crate::sql_text::string_literal;
use crate::tenant_of;
use crate::write::{IfTableMissing, WriteMode, now_micros};

/// How often the deliverer looks for due retries (new changes wake it at once).
pub const TICK: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the deliverer remembers of one activation between passes.
#[derive(Default)]
struct Progress {
    /// The change count at which nothing was pending.
    settled: Option<u64>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Runs until the server stops (the task is aborted).
pub async fn run(engine: Engine) {
    let client = match reqwest::Client::builder().build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("no deliveries: cannot build an HTTP client: {e}");
            return;
        }
    };
    let mut progress: HashMap<(String, String, String, i64), Progress> = HashMap::new();
    loop {
        tokio::select! {
            () = segments::changed() => {},
            () = tokio::time::sleep(TICK) => {},
        }
        for tenant in engine.catalog().tenant_names() {
            if let Err(e) = deliver_tenant(&engine, &client, &tenant, &mut progress).await {
                tracing::warn!(tenant, "deliveries: {e}");
            }
        }
    }
}

async fn deliver_tenant(
    engine: &Engine,
    client: &reqwest::Client,
    tenant: &str,
    progress: &mut HashMap<(String, String, String, i64), Progress>,
) -> Result<()> {
    let ctx = engine.session(tenant)?;
    let activations = activations(&ctx).await?;
    if activations.is_empty() {
        return Ok(());
    }
    let destinations = destinations(&ctx).await?;
    let change = segments::change_count();
    for activation in activations {
        let key = (
            tenant.to_string(),
            activation.segment.clone(),
            activation.destination.clone(),
            activation.created_at,
        );
        let state = progress.entry(key).or_default();
        if state.settled == Some(change) || state.retry_at.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let Some(stored) = destinations.get(&activation.destination) else {
            continue;
        };
        match deliver(engine, &ctx, client, &activation, &stored.destination).await? {
            None => {
                *state = Progress {
                    settled: Some(change),
                    ..Progress::default()
                }
            }
            Some(error) => {
                state.failures += 1;
                let backoff =
                    Duration::from_secs(1u64 << (state.failures - 1).min(6)).min(BACKOFF_MAX);
                state.retry_at = Some(Instant::now() + backoff);
                tracing::warn!(
                    tenant,
                    segment = activation.segment,
                    destination = activation.destination,
                    "delivery failed (retry in {backoff:?}): {error}"
                );
            }
        }
    }
    Ok(())
}

/// A batch not yet delivered: its id, change time and customer ids.
struct Pending {
    batch_id: String,
    change_at: i64,
    entered: Vec<String>,
    exited: Vec<String>,
}

/// Sends the activation's pending batches in order; the first failure's message, if any.
async fn deliver(
    engine: &Engine,
    ctx: &SessionContext,
    client: &reqwest::Client,
    activation: &Activation,
    destination: &Destination,
) -> Result<Option<String>> {
    let logged = logged(ctx, activation).await?;
    for pending in pending(ctx, activation, destination).await? {
        let (attempts, delivered) = logged.get(&pending.batch_id).copied().unwrap_or_default();
        if delivered {
            continue;
        }
        let consent = destination.consent.as_deref();
        let batch = Batch {
            segment: activation.segment.clone(),
            destination: activation.destination.clone(),
            batch_id: pending.batch_id,
            change_at: pending.change_at,
            entered: payload::members(ctx, &pending.entered, activation, consent).await?,
            exited: payload::members(ctx, &pending.exited, activation, consent).await?,
        };
        let outcome = if batch.entered.is_empty() && batch.exited.is_empty() {
            Ok(())
        } else {
            send(engine, client, destination, &batch).await
        };
        log_attempt(engine, ctx, &batch, attempts + 1, outcome.as_ref().err()).await?;
        if let Err(error) = outcome {
            return Ok(Some(error));
        }
    }
    Ok(None)
}

/// Batch id → (attempts so far, delivered).
async fn logged(
    ctx: &SessionContext,
    activation: &Activation,
) -> Result<HashMap<String, (i64, bool)>> {
    let sql = format!(
        "SELECT batch_id, count(*), max(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END) \
         FROM {ACTIVATION_LOG} WHERE destination = {} AND segment = {} GROUP BY batch_id",
        string_literal(&activation.destination),
        string_literal(&activation.segment)
    );
    let mut logged = HashMap::new();
    for batch in ctx.sql(&sql).await?.collect().await? {
        let ids = as_utf8(batch.column(0))?;
        let counts = as_int64(batch.column(1))?;
        let delivered = as_int64(batch.column(2))?;
        for row in 0..batch.num_rows() {
            logged.insert(
                ids.value(row).to_string(),
                (counts.value(row), delivered.value(row) > 0),
            );
        }
    }
    Ok(logged)
}

/// Every batch of the activation, in change order (delivered ones included).
async fn pending(
    ctx: &SessionContext,
    activation: &Activation,
    destination: &Destination,
) -> Result<Vec<Pending>> {
    let since = activation.created_at;
    let sql = format!(
        "SELECT customer_id, entered_at, exited_at FROM {SEGMENT_MEMBERS} WHERE segment = {} \
         AND (exited_at IS NULL OR exited_at > to_timestamp_micros({since}))",
        string_literal(&activation.segment)
    );
    let mut changes: BTreeMap<i64, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for batch in ctx.sql(&sql).await?.collect().await? {
        let customers = as_utf8(batch.column(0))?;
        let (entered, exited) = (as_micros(batch.column(1))?, as_micros(batch.column(2))?);
        for row in 0..batch.num_rows() {
            let customer = customers.value(row).to_string();
            let entered_at = entered.value(row).max(since);
            changes
                .entry(entered_at)
                .or_default()
                .0
                .push(customer.clone());
            if exited.is_valid(row) {
                changes
                    .entry(exited.value(row))
                    .or_default()
                    .1
                    .push(customer);
            }
        }
    }
    let size = match destination.sink {
        Sink::Webhook { batch_size, .. } => batch_size,
        Sink::File { .. } => usize::MAX,
    };
    let mut batches = Vec::new();
    for (change_at, (mut entered, mut exited)) in changes {
        entered.sort();
        exited.sort();
        let all: Vec<(String, bool)> = entered
            .into_iter()
            .map(|c| (c, true))
            .chain(exited.into_iter().map(|c| (c, false)))
            .collect();
        for (k, chunk) in all.chunks(size).enumerate() {
            let (entered, exited): (Vec<_>, Vec<_>) = chunk.iter().cloned().partition(|c| c.1);
            batches.push(Pending {
                batch_id: format!(
                    "{}.{}.{change_at}.{k}",
                    activation.segment, activation.destination
                ),
                change_at,
                entered: entered.into_iter().map(|c| c.0).collect(),
                exited: exited.into_iter().map(|c| c.0).collect(),
            });
        }
    }
    Ok(batches)
}

/// One attempt: `Err` carries what went wrong, for the log.
async fn send(
    engine: &Engine,
    client: &reqwest::Client,
    destination: &Destination,
    batch: &Batch,
) -> std::result::Result<(), String> {
    match &destination.sink {
        Sink::Webhook {
            url,
            headers,
            format,
            timeout,
            ..
        } => {
            let body = match format {
                MessageFormat::Plain => payload::plain_body(batch),
                MessageFormat::Segment => payload::segment_body(batch),
            };
            let mut request = client
                .post(url)
                .timeout(*timeout)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &batch.batch_id)
                .body(body.to_string());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request
                .send()
                .await
                .map_err(|e| format!("POST {url}: {e}"))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            Err(format!("POST {url}: {status}: {text}"))
        }
        Sink::File { uri, format } => payload::write_file(engine, uri, *format, batch)
            .await
            .map_err(|e| e.to_string()),
    }
}

async fn log_attempt(
    engine: &Engine,
    ctx: &SessionContext,
    batch: &Batch,
    attempts: i64,
    error: Option<&String>,
) -> Result<()> {
    let text = |value: &str| Arc::new(StringArray::from(vec![value.to_string()]));
    let time =
        |micros: i64| Arc::new(TimestampMicrosecondArray::from(vec![micros]).with_timezone("UTC"));
    let count = |n: usize| Arc::new(Int64Array::from(vec![n as i64]));
    let row = RecordBatch::try_new(
        activation_log_schema(),
        vec![
            text(&batch.destination),
            text(&batch.segment),
            text(&batch.batch_id),
            time(batch.change_at),
            count(batch.entered.len()),
            count(batch.exited.len()),
            Arc::new(Int64Array::from(vec![attempts])),
            text(if error.is_some() {
                "failed"
            } else {
                "delivered"
            }),
            Arc::new(StringArray::from(vec![error.cloned()])),
            time(now_micros()),
        ],
    )?;
    engine
        .writer()
        .write(
            &tenant_of(ctx),
            ACTIVATION_LOG,
            vec![row],
            IfTableMissing::Fail,
            WriteMode::Append,
        )
        .await?;
    Ok(())
}
