//! Refreshes stored segments on their schedule while the server is up ([`Schedule`]): an
//! interval segment when its interval has passed since its last refresh (so a restart catches
//! up at once), a realtime one after each change of the tenant's events or identities.
//!
//! One task looks at every tenant once a tick. A refresh that fails is logged and tried again
//! after its interval (realtime: after the next change, or a minute), not every tick.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::schedule::Schedule;
use super::{refresh_when, stored};
use crate::Engine;
use crate::error::Result;
use crate::write::now_micros;

/// How often the scheduler looks for due segments: the bound on a realtime segment's delay
/// beyond its own refresh time.
pub const TICK: Duration = Duration::from_millis(500);

/// What the scheduler remembers of one segment between ticks.
struct Attempt {
    at: Instant,
    /// The tenant's change counter when the attempt started.
    changes: u64,
}

/// Runs until the engine's server stops (the task is aborted).
pub async fn run(engine: Engine) {
    let mut attempts: HashMap<(String, String), Attempt> = HashMap::new();
    loop {
        tokio::time::sleep(TICK).await;
        for tenant in engine.catalog().tenant_names() {
            if let Err(e) = refresh_due(&engine, &tenant, &mut attempts).await {
                tracing::warn!(tenant, "scheduled segment refresh: {e}");
            }
        }
    }
}

async fn refresh_due(
    engine: &Engine,
    tenant: &str,
    attempts: &mut HashMap<(String, String), Attempt>,
) -> Result<()> {
    let ctx = engine.session(tenant)?;
    let changes = engine.identity().tenant(tenant).changes();
    for (name, segment) in stored(&ctx).await? {
        let Ok(schedule) = Schedule::parse(&segment.schedule) else {
            continue;
        };
        let key = (tenant.to_string(), name.clone());
        let last = attempts.get(&key);
        let due = match schedule {
            Schedule::Manual => false,
            Schedule::Every(interval) => {
                let since_refresh = segment.refreshed_at.is_none_or(|at| {
                    now_micros().saturating_sub(at) >= interval.as_micros() as i64
                });
                since_refresh && last.is_none_or(|a| a.at.elapsed() >= interval)
            }
            Schedule::Realtime => last.is_none_or(|a| {
                a.changes != changes || a.at.elapsed() >= Schedule::REALTIME_AT_LEAST
            }),
        };
        if !due {
            continue;
        }
        attempts.insert(
            key,
            Attempt {
                at: Instant::now(),
                changes,
            },
        );
        let record_unchanged = schedule != Schedule::Realtime;
        if let Err(e) = refresh_when(engine, &ctx, &name, record_unchanged).await {
            tracing::warn!(tenant, segment = name, "scheduled refresh failed: {e}");
        }
    }
    Ok(())
}
