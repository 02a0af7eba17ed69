//! `session_start(timestamp, gap) OVER (PARTITION BY person ORDER BY timestamp)`: the time of the
//! first row of the row's session; a session ends after more than `gap` without events. See
//! [`crate::sessions`].

use std::sync::LazyLock;

use datafusion::logical_expr::Documentation;
use datafusion::logical_expr::window_doc_sections::DOC_SECTION_ANALYTICAL;

use crate::sessions::{SessionOutput, SessionWindow};

/// SQL name.
pub const NAME: &str = "session_start";

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION_ANALYTICAL,
        "The time of the first row of the row's session: a new session starts at a row more \
         than `gap` after the previous row. Use with PARTITION BY the person and ORDER BY the \
         time. Rows with a NULL time get NULL.",
        "session_start(timestamp, gap) OVER (PARTITION BY person ORDER BY timestamp)",
    )
    .with_sql_example(
        "SELECT anonymous_id, session_start(timestamp, INTERVAL '30 minutes') \
         OVER (PARTITION BY anonymous_id ORDER BY timestamp) AS session_started FROM events",
    )
    .with_argument("timestamp", "TIMESTAMP, DATE or integer time")
    .with_argument(
        "gap",
        "INTERVAL, or integer seconds (integer times: their own unit)",
    )
    .build()
});

/// The `session_start` window function.
pub fn session_start() -> SessionWindow {
    SessionWindow::new(NAME, SessionOutput::Start, &DOCUMENTATION)
}
