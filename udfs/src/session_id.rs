//! `session_id(timestamp, gap) OVER (PARTITION BY person ORDER BY timestamp)`: the number of the
//! row's session within the partition (1, 2, …); a session ends after more than `gap` without
//! events. See [`crate::sessions`].

use std::sync::LazyLock;

use datafusion::logical_expr::Documentation;
use datafusion::logical_expr::window_doc_sections::DOC_SECTION_ANALYTICAL;

use crate::sessions::{SessionOutput, SessionWindow};

/// SQL name.
pub const NAME: &str = "session_id";

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION_ANALYTICAL,
        "Numbers sessions within a window partition (1, 2, ...): a new session starts at a row \
         more than `gap` after the previous row. Use with PARTITION BY the person and ORDER BY \
         the time. Rows with a NULL time get NULL.",
        "session_id(timestamp, gap) OVER (PARTITION BY person ORDER BY timestamp)",
    )
    .with_sql_example(
        "SELECT anonymous_id, timestamp, session_id(timestamp, INTERVAL '30 minutes') \
         OVER (PARTITION BY anonymous_id ORDER BY timestamp) AS session FROM events",
    )
    .with_argument("timestamp", "TIMESTAMP, DATE or integer time")
    .with_argument(
        "gap",
        "INTERVAL, or integer seconds (integer times: their own unit)",
    )
    .build()
});

/// The `session_id` window function.
pub fn session_id() -> SessionWindow {
    SessionWindow::new(NAME, SessionOutput::Number, &DOCUMENTATION)
}
