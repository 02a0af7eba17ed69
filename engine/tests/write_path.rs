//! The write path on a real local data root: what a restart replays, what it skips, and that
//! compaction leaves the data as it was.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use datafusion::arrow::array::{
    Array, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tributary_catalog::{S3Options, Storage};
use tributary_engine::{Engine, IfTableMissing, WriteMode, WriteOptions};

fn storage(dir: &std::path::Path) -> Storage {
    Storage::parse(dir.to_str().unwrap(), &S3Options::default()).unwrap()
}

/// Settings where only an explicit flush commits.
fn manual_flush(storage: &Storage) -> WriteOptions {
    let mut options = WriteOptions::for_storage(storage);
    options.flush_interval = Duration::from_secs(3600);
    options
}

/// An engine on `storage` where only an explicit flush commits.
async fn open_manual(storage: &Storage) -> Engine {
    Engine::open_with(storage.clone(), manual_flush(storage))
        .await
        .unwrap()
}

fn events(ids: &[&str]) -> RecordBatch {
    events_of(ids, "u")
}

/// Track events of one user, one per message id.
fn events_of(ids: &[&str], user: &str) -> RecordBatch {
    let n = ids.len();
    let schema = Schema::new(vec![
        Field::new("message_id", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("event_date", DataType::Date32, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(ids.to_vec())),
            Arc::new(StringArray::from(vec!["track"; n])),
            Arc::new(StringArray::from(vec![user; n])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_700_000_000_000_000; n])
                    .with_timezone("UTC"),
            ),
            Arc::new(Date32Array::from(vec![19_675; n])),
        ],
    )
    .unwrap()
}

async fn count(engine: &Engine, sql: &str) -> i64 {
    let batches = engine.sql("default", sql).await.unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

async fn write(engine: &Engine, ids: &[&str]) -> u64 {
    engine
        .writer()
        .write(
            "default",
            "events",
            vec![events(ids)],
            IfTableMissing::Fail,
            WriteMode::Append,
        )
        .await
        .unwrap()
        .rows
}

#[tokio::test]
async fn a_restart_replays_what_is_not_committed_and_skips_what_is() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path());
    {
        let engine = open_manual(&storage).await;
        assert_eq!(write(&engine, &["a", "b", "c"]).await, 3);
        engine.flush().await.unwrap(); // committed, and still in the log
        assert_eq!(write(&engine, &["d", "e"]).await, 2); // only in the log
        assert_eq!(count(&engine, "SELECT count(*) FROM events").await, 5);
    }
    let engine = open_manual(&storage).await;
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, 5);
    assert_eq!(
        count(&engine, "SELECT count(DISTINCT message_id) FROM events").await,
        5
    );
    // Both the committed and the replayed ids are known to the dedup set.
    assert_eq!(write(&engine, &["a", "e", "f"]).await, 1);
    engine.flush().await.unwrap();
    drop(engine);
    let engine = open_manual(&storage).await;
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, 6);
}

#[tokio::test]
async fn compaction_merges_small_files_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path());
    let mut options = manual_flush(&storage);
    options.compact_after_commits = 4;
    let engine = Engine::open_with(storage, options).await.unwrap();
    for round in 0..4 {
        let ids: Vec<String> = (0..10).map(|i| format!("r{round}-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        write(&engine, &ids).await;
        engine.flush().await.unwrap();
    }
    let files = file_count(&engine, "events");
    assert_eq!(files, 1, "four flushes' files were compacted into one");
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, 40);
}

#[tokio::test]
async fn buffered_rows_take_part_in_queries_and_dml() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path());
    let engine = open_manual(&storage).await;
    write(&engine, &["x1", "x2"]).await;
    engine.flush().await.unwrap();
    write(&engine, &["y1", "y2", "y3"]).await;
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM events WHERE message_id LIKE 'y%'"
        )
        .await,
        3
    );
    let names = engine
        .sql(
            "default",
            "SELECT message_id FROM events ORDER BY message_id LIMIT 2",
        )
        .await
        .unwrap();
    let first = datafusion::arrow::compute::cast(names[0].column(0), &DataType::Utf8).unwrap();
    let first = first.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!((first.len(), first.value(0)), (2, "x1"));
    engine
        .sql(
            "default",
            "DELETE FROM events WHERE message_id IN ('x1', 'y1')",
        )
        .await
        .unwrap();
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, 3);
}

#[tokio::test]
async fn a_table_made_again_does_not_get_the_old_tables_logged_rows() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path());
    let orders = |ids: Vec<i64>| {
        RecordBatch::try_from_iter([("order_id", Arc::new(Int64Array::from(ids)) as _)]).unwrap()
    };
    {
        let engine = open_manual(&storage).await;
        engine
            .sql("default", "CREATE TABLE orders (order_id BIGINT)")
            .await
            .unwrap();
        let written = engine
            .writer()
            .write(
                "default",
                "orders",
                vec![orders(vec![1, 2])],
                IfTableMissing::Fail,
                WriteMode::Append,
            )
            .await
            .unwrap();
        assert_eq!(written.rows, 2);
        engine.sql("default", "DROP TABLE orders").await.unwrap();
        engine
            .sql("default", "CREATE TABLE orders (order_id BIGINT)")
            .await
            .unwrap();
        engine
            .writer()
            .write(
                "default",
                "orders",
                vec![orders(vec![3])],
                IfTableMissing::Fail,
                WriteMode::Append,
            )
            .await
            .unwrap();
        // A crash: nothing flushed; both writes are only in the log.
    }
    let engine = open_manual(&storage).await;
    assert_eq!(count(&engine, "SELECT count(*) FROM orders").await, 1);
    assert_eq!(count(&engine, "SELECT max(order_id) FROM orders").await, 3);
}

/// An engine on `dir` where an upload over 4 KiB is a streamed load, holding at most
/// `load_memory_bytes` of rows in memory (the default if `None`).
async fn streaming_engine(dir: &std::path::Path, load_memory_bytes: Option<usize>) -> Engine {
    let storage = storage(dir);
    let mut options = manual_flush(&storage);
    options.direct_commit_bytes = 4096;
    if let Some(bytes) = load_memory_bytes {
        options.load_memory_bytes = bytes;
    }
    Engine::open_with(storage, options).await.unwrap()
}

/// The number of data files of `table`.
fn file_count(engine: &Engine, table: &str) -> usize {
    let tenant = engine.catalog().require_tenant("default").unwrap();
    let delta = tenant.delta_table(table).unwrap();
    delta.snapshot().unwrap().log_data().num_files()
}

/// Two batches of events, then the upload breaks off.
fn broken_load() -> impl futures::Stream<Item = tributary_engine::Result<RecordBatch>> + Send {
    futures::stream::iter([
        Ok(spread_events("a", 500)),
        Ok(spread_events("b", 500)),
        Err(tributary_engine::Error::InvalidInput(
            "the client went away".into(),
        )),
    ])
}

async fn write_stream(
    engine: &Engine,
    table: &str,
    batches: impl futures::Stream<Item = tributary_engine::Result<RecordBatch>> + Send,
    if_missing: IfTableMissing,
) -> tributary_engine::Result<tributary_engine::WriteReceipt> {
    let writer = engine.writer();
    writer
        .write_stream("default", table, batches, if_missing, WriteMode::Append)
        .await
}

/// `n` events with ids `{prefix}-{i}`, spread over three days.
fn spread_events(prefix: &str, n: usize) -> RecordBatch {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let batch = events(&ids);
    let days = Date32Array::from((0..n).map(|i| 19_675 + (i % 3) as i32).collect::<Vec<_>>());
    let mut columns = batch.columns().to_vec();
    columns[4] = Arc::new(days);
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

#[tokio::test]
async fn a_streamed_load_over_the_direct_commit_size_is_committed_once_held_or_spilled() {
    for load_memory_bytes in [0, 1 << 30] {
        streamed_load_is_committed_once(load_memory_bytes).await;
    }
}

async fn streamed_load_is_committed_once(load_memory_bytes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let engine = streaming_engine(dir.path(), Some(load_memory_bytes)).await;
    let tenant = engine.catalog().require_tenant("default").unwrap();
    let version = || tenant.delta_table("events").unwrap().version();
    let before = version();

    // Breaks off after two batches: nothing is stored and the ids are free again.
    let broken = broken_load();
    let failed = write_stream(&engine, "events", broken, IfTableMissing::Fail).await;
    assert!(failed.is_err());
    assert_eq!(version(), before);
    assert_eq!(count(&engine, "SELECT count(*) FROM events").await, 0);

    // Whole, with a retry of a's first 100 rows inside it: one commit, one file per day.
    let load = futures::stream::iter([
        Ok(spread_events("a", 500)),
        Ok(spread_events("b", 500)),
        Ok(spread_events("a", 100)),
    ]);
    let receipt = write_stream(&engine, "events", load, IfTableMissing::Fail)
        .await
        .unwrap();
    assert_eq!((receipt.rows, receipt.duplicates), (1000, 100));
    assert_eq!(
        tenant.delta_table("events").unwrap().version(),
        before.map(|v| v + 1)
    );
    let files = file_count(&engine, "events");
    assert_eq!(files, 3);
    assert_eq!(
        count(&engine, "SELECT count(DISTINCT message_id) FROM events").await,
        1000
    );
    let spills = std::fs::read_dir(dir.path().join("_tributary/wal"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("load-")
        })
        .count();
    assert_eq!(spills, 0, "the spill directory is removed");
}

#[tokio::test]
async fn a_table_made_by_a_streamed_load_that_breaks_off_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let engine = streaming_engine(dir.path(), None).await;
    let broken = broken_load();
    let failed = write_stream(&engine, "visits", broken, IfTableMissing::Create).await;
    assert!(failed.is_err());
    let tenant = engine.catalog().require_tenant("default").unwrap();
    assert!(
        !tenant.has_table("visits"),
        "the load's new table is dropped"
    );
}

#[tokio::test]
async fn a_streamed_load_cancelled_midway_gives_its_message_ids_back() {
    // A client that goes away cancels its request: the load's future is dropped mid-upload.
    let dir = tempfile::tempdir().unwrap();
    let engine = streaming_engine(dir.path(), None).await;
    let stalled = futures::stream::iter([Ok(spread_events("a", 500)), Ok(spread_events("b", 500))])
        .chain(futures::stream::pending());
    let cancelled = tokio::time::timeout(
        Duration::from_millis(500),
        write_stream(&engine, "events", stalled, IfTableMissing::Fail),
    )
    .await;
    assert!(cancelled.is_err(), "the stalled load was still running");
    let whole = futures::stream::iter([Ok(spread_events("a", 500)), Ok(spread_events("b", 500))]);
    let receipt = write_stream(&engine, "events", whole, IfTableMissing::Fail)
        .await
        .unwrap();
    assert_eq!((receipt.rows, receipt.duplicates), (1000, 0));
}

#[tokio::test]
async fn a_write_whose_writer_stops_waiting_still_resolves_its_identities() {
    // A client that goes away drops its write at whatever await it has reached. Once the rows
    // are handed to the log they are stored, so their identifiers must reach identity_map too.
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path());
    let engine = open_manual(&storage).await;
    let mut stored_after_drop = 0;
    for polls in 1..=8 {
        let user = format!("user-{polls}");
        let ids: Vec<String> = (0..3).map(|i| format!("m{polls}-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let writer = engine.writer();
        let mut write = Box::pin(writer.write(
            "default",
            "events",
            vec![events_of(&ids, &user)],
            IfTableMissing::Fail,
            WriteMode::Append,
        ));
        let mut finished = false;
        for _ in 0..polls {
            if futures::poll!(&mut write).is_ready() {
                finished = true;
                break;
            }
        }
        drop(write);
        // Wait (bounded) for a handed-off write to become durable and for its identities.
        let (mut stored, mut mapped) = (0, 0);
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let events = format!("SELECT count(*) FROM events WHERE user_id = '{user}'");
            let map = format!("SELECT count(*) FROM identity_map WHERE id_value = '{user}'");
            (stored, mapped) = (count(&engine, &events).await, count(&engine, &map).await);
            if stored > 0 && mapped > 0 {
                break;
            }
        }
        assert_eq!(
            mapped,
            i64::from(stored > 0),
            "{user}: {stored} events stored, {mapped} identifiers mapped"
        );
        if stored > 0 && !finished {
            stored_after_drop += 1;
        }
    }
    assert!(
        stored_after_drop > 0,
        "no write was dropped after its hand-off: the test did not reach the case it checks"
    );
}
