//! The queries running on this server: each `DoGet` of a query registers here, so that it can be
//! cancelled (`CancelFlightInfo`), ends with a clear error at its time limit, and counts against
//! its user's limit of concurrent queries. Dropping a result stream (the end of the query, a
//! client gone, a cancel, a timeout) stops DataFusion's work and frees the slot.
//!
//! It also keeps, for a short while, the physical plan `GetFlightInfo` made for each query, so
//! that its `DoGet` runs it instead of planning the SQL again (small queries — the segment
//! builder's counts, point lookups — pay planning once). Tickets still carry their SQL: a `DoGet`
//! that finds no kept plan (another server, a second `DoGet`, a plan past its time) plans again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tonic::Status;

use crate::flight::statements::{FlightDataStream, past_time_limit};

/// Cancelled ids remembered for a `DoGet` that comes after its cancel.
const CANCELLED_REMEMBERED: usize = 4096;
/// Plans kept for their `DoGet` at most.
const PLANS_KEPT: usize = 256;
/// How long a plan waits for its `DoGet`.
const PLAN_KEPT_FOR: Duration = Duration::from_secs(60);

/// A plan kept for its `DoGet`: who made it, in which session.
pub(crate) struct KeptPlan {
    user: String,
    ctx: datafusion::prelude::SessionContext,
    planned: crate::flight::statements::Planned,
    at: std::time::Instant,
}

impl std::fmt::Debug for KeptPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptPlan")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Limits on the queries of one server.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Longest a query (planning, running, streaming) may take; `None`: no limit.
    pub timeout: Option<Duration>,
    /// Queries one user may run at once (`DoGet` streams open).
    pub per_user: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            timeout: Some(Duration::from_secs(300)),
            per_user: 16,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    running: HashMap<u128, tokio::sync::watch::Sender<bool>>,
    cancelled: VecDeque<u128>,
    per_user: HashMap<String, usize>,
    plans: HashMap<u128, KeptPlan>,
}

/// The registry of running queries.
#[derive(Debug, Default)]
pub(crate) struct Queries {
    limits: QueryLimits,
    state: Mutex<State>,
}

/// A query's place in the registry; leaving it (drop) frees the user's slot.
#[derive(Debug)]
pub(crate) struct Slot {
    queries: Arc<Queries>,
    id: u128,
    user: String,
    cancelled: tokio::sync::watch::Receiver<bool>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.queries.state.lock().expect("query registry poisoned");
        state.running.remove(&self.id);
        if let Some(count) = state.per_user.get_mut(&self.user) {
            *count = count.saturating_sub(1);
        }
    }
}

impl Queries {
    /// A registry with these limits.
    pub(crate) fn new(limits: QueryLimits) -> Self {
        Self {
            limits,
            state: Mutex::default(),
        }
    }

    /// The limits.
    pub(crate) fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Registers a run of query `id` by `user`; refused when it was cancelled already or the
    /// user runs as many queries as allowed.
    pub(crate) fn start(self: &Arc<Self>, id: u128, user: &str) -> Result<Slot, Status> {
        let mut state = self.state.lock().expect("query registry poisoned");
        if state.cancelled.contains(&id) {
            return Err(Status::cancelled("the query was cancelled"));
        }
        let count = state.per_user.entry(user.to_string()).or_default();
        if *count >= self.limits.per_user {
            return Err(Status::resource_exhausted(format!(
                "{} already runs {} queries, the most allowed at once (--max-queries-per-user); \
                 retry when one ends",
                if user.is_empty() {
                    "this server's client".to_string()
                } else {
                    format!("user '{user}'")
                },
                self.limits.per_user
            )));
        }
        *count += 1;
        let (sender, receiver) = tokio::sync::watch::channel(false);
        state.running.insert(id, sender);
        Ok(Slot {
            queries: Arc::clone(self),
            id,
            user: user.to_string(),
            cancelled: receiver,
        })
    }

    /// Keeps the plan `GetFlightInfo` made for `user` in `ctx`, for the `DoGet` that follows.
    pub(crate) fn keep_plan(
        &self,
        user: &str,
        ctx: &datafusion::prelude::SessionContext,
        planned: crate::flight::statements::Planned,
    ) {
        let mut state = self.state.lock().expect("query registry poisoned");
        let now = std::time::Instant::now();
        state
            .plans
            .retain(|_, kept| now.duration_since(kept.at) < PLAN_KEPT_FOR);
        if state.plans.len() >= PLANS_KEPT {
            return;
        }
        state.plans.insert(
            planned.id,
            KeptPlan {
                user: user.to_string(),
                ctx: ctx.clone(),
                planned,
                at: now,
            },
        );
    }

    /// The plan kept for run `id`, if the same user (in the same tenant) asks for it in time.
    pub(crate) fn take_plan(
        &self,
        id: u128,
        user: &str,
        tenant: &str,
    ) -> Option<(
        datafusion::prelude::SessionContext,
        crate::flight::statements::Planned,
    )> {
        let kept = self
            .state
            .lock()
            .expect("query registry poisoned")
            .plans
            .remove(&id)?;
        let same_caller = kept.user == user && tributary_engine::tenant_of(&kept.ctx) == tenant;
        (same_caller && kept.at.elapsed() < PLAN_KEPT_FOR).then_some((kept.ctx, kept.planned))
    }

    /// How many queries are streaming results now.
    pub(crate) fn running(&self) -> usize {
        self.state
            .lock()
            .expect("query registry poisoned")
            .running
            .len()
    }

    /// Cancels query `id`: a running one ends with `CANCELLED`, a later `DoGet` of it too.
    pub(crate) fn cancel(&self, id: u128) {
        let mut state = self.state.lock().expect("query registry poisoned");
        if let Some(sender) = state.running.get(&id) {
            let _ = sender.send(true);
        }
        if state.cancelled.len() >= CANCELLED_REMEMBERED {
            state.cancelled.pop_front();
        }
        state.cancelled.push_back(id);
    }
}

/// `stream`, ended with `CANCELLED` when the query is cancelled and `DEADLINE_EXCEEDED` at its
/// time limit; the slot is held until the stream ends or is dropped.
pub(crate) fn supervised(
    stream: FlightDataStream,
    slot: Slot,
    timeout: Option<Duration>,
) -> FlightDataStream {
    let deadline = timeout.map(|t| (tokio::time::Instant::now() + t, t));
    let state = (stream, slot, false);
    Box::pin(futures::stream::unfold(
        state,
        move |(mut stream, mut slot, done)| async move {
            if done {
                return None;
            }
            let expiry = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = stream.next() => item.map(|item| (item, (stream, slot, false))),
                () = expiry => {
                    let limit = deadline.map_or(Duration::ZERO, |(_, t)| t);
                    Some((Err(past_time_limit("query", limit)), (stream, slot, true)))
                }
                () = cancelled(&mut slot.cancelled) => {
                    Some((Err(Status::cancelled("the query was cancelled")), (stream, slot, true)))
                }
            }
        },
    ))
}

async fn cancelled(receiver: &mut tokio::sync::watch::Receiver<bool>) {
    if receiver.wait_for(|cancelled| *cancelled).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endless() -> FlightDataStream {
        Box::pin(futures::stream::pending())
    }

    #[tokio::test]
    async fn a_cancelled_query_ends_and_frees_its_slot() {
        let queries = Arc::new(Queries::new(QueryLimits {
            timeout: None,
            per_user: 1,
        }));
        let slot = queries.start(1, "ana").unwrap();
        assert_eq!(
            queries.start(2, "ana").unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
        queries.start(3, "bob").unwrap();
        let mut stream = supervised(endless(), slot, None);
        queries.cancel(1);
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Cancelled);
        assert!(stream.next().await.is_none());
        drop(stream);
        queries.start(4, "ana").unwrap();
        assert_eq!(
            queries.start(1, "bob").unwrap_err().code(),
            tonic::Code::Cancelled,
            "a DoGet after its cancel"
        );
    }

    #[tokio::test]
    async fn a_query_past_its_limit_ends_with_deadline_exceeded() {
        let queries = Arc::new(Queries::new(QueryLimits::default()));
        let slot = queries.start(1, "").unwrap();
        let mut stream = supervised(endless(), slot, Some(Duration::from_millis(20)));
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(
            status.message().contains("time limit"),
            "{}",
            status.message()
        );
        assert_eq!(queries.running(), 1, "held until the stream is dropped");
        drop(stream);
        assert_eq!(queries.running(), 0);
    }
}
