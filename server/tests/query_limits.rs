//! The query limits of `tributary serve`, through the Rust arrow-flight client against the real
//! binary: a query past its time limit, a cancelled query, a query past its memory limit, the
//! per-user limit of concurrent queries, and a 10-million-row result streamed without holding it
//! in server memory (peak RSS measured).

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{CancelFlightInfoRequest, FlightInfo};
use futures::StreamExt;
use prost::Message;
use tonic::transport::Channel;

mod support;
use support::Server;

/// A server on a fresh data directory (kept for the test's life).
fn start(extra: &[&str]) -> (Server, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    (Server::start(data.path(), extra), data)
}

/// Reads a query's whole result; the error status if it fails.
async fn drain(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> Result<usize, tonic::Status> {
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await.map_err(status)?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.map_err(status)?.num_rows();
    }
    Ok(rows)
}

fn status(error: arrow_flight::error::FlightError) -> tonic::Status {
    match error {
        arrow_flight::error::FlightError::Tonic(status) => *status,
        other => tonic::Status::unknown(other.to_string()),
    }
}

const ENDLESS: &str = "SELECT count(*) FROM generate_series(1, 1000000000000) a(v) WHERE v % 7 = 3";

#[tokio::test]
async fn a_query_past_its_time_limit_is_stopped() {
    let (server, _data) = start(&["--query-timeout-secs", "2"]);
    let mut client = server.client().await;
    let info = client.execute(ENDLESS.into(), None).await.unwrap();
    let error = drain(&mut client, info).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::DeadlineExceeded, "{error}");
    assert!(error.message().contains("time limit of 2 s"), "{error}");
    // The server is fine afterwards.
    let info = client.execute("SELECT 1".into(), None).await.unwrap();
    assert_eq!(drain(&mut client, info).await.unwrap(), 1);
}

#[tokio::test]
async fn cancel_flight_info_stops_a_running_query() {
    let (server, _data) = start(&[]);
    let mut client = server.client().await;
    let info = client.execute(ENDLESS.into(), None).await.unwrap();
    let mut running = server.client().await;
    let reading = tokio::spawn({
        let info = info.clone();
        async move { drain(&mut running, info).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let request = CancelFlightInfoRequest {
        info: Some(info.clone()),
    };
    let action = arrow_flight::Action::new("CancelFlightInfo", request.encode_to_vec());
    let mut answers = client.do_action(action).await.unwrap();
    let answer = answers.message().await.unwrap().expect("one answer");
    let result = arrow_flight::CancelFlightInfoResult::decode(answer.body).unwrap();
    assert_eq!(result.status, arrow_flight::CancelStatus::Cancelled as i32);
    let error = reading.await.unwrap().unwrap_err();
    assert_eq!(error.code(), tonic::Code::Cancelled, "{error}");
    // A DoGet of a cancelled ticket is refused too.
    let again = drain(&mut client, info).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::Cancelled);
}

#[tokio::test]
async fn a_query_past_its_memory_limit_fails_clearly() {
    let (server, _data) = start(&["--query-memory-mb", "32"]);
    let mut client = server.client().await;
    let sql = "SELECT array_agg(v) FROM generate_series(1, 20000000) a(v)";
    let result = match client.execute(sql.into(), None).await {
        Ok(info) => drain(&mut client, info).await,
        Err(e) => Err(status(e)),
    };
    let error = result.unwrap_err();
    assert!(error.message().contains("Resources exhausted"), "{error}");
    // A sort past the limit (4M rows and their sort keys: ~64 MB) spills to disk instead of
    // failing (EXPLAIN ANALYZE shows SortExec spill_count > 0).
    let sorted = "SELECT v * 2 AS w FROM generate_series(1, 4000000) a(v) ORDER BY random()";
    let info = client.execute(sorted.into(), None).await.unwrap();
    assert_eq!(drain(&mut client, info).await.unwrap(), 4_000_000);
    // Other queries of the server run on: each query has a pool of its own.
    let info = client
        .execute(
            "SELECT sum(v) FROM generate_series(1, 1000) a(v)".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(drain(&mut client, info).await.unwrap(), 1);
}

#[tokio::test]
async fn a_user_runs_a_limited_number_of_queries_at_once() {
    let (server, _data) = start(&["--max-queries-per-user", "2"]);
    let mut client = server.client().await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let info = client.execute(ENDLESS.into(), None).await.unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        open.push(client.do_get(ticket).await.unwrap());
    }
    let info = client.execute("SELECT 1".into(), None).await.unwrap();
    let error = drain(&mut client, info).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted, "{error}");
    assert!(
        error.message().contains("--max-queries-per-user"),
        "{error}"
    );
    drop(open);
    // Slots come back once the streams are gone (the server notices the reset streams).
    let mut answered = None;
    for _ in 0..100 {
        let info = client.execute("SELECT 1".into(), None).await.unwrap();
        match drain(&mut client, info).await {
            Ok(rows) => {
                answered = Some(rows);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert_eq!(answered, Some(1));
}

#[tokio::test]
async fn ten_million_rows_stream_without_being_held_in_memory() {
    let (server, _data) = start(&[]);
    let mut client = server.client().await;
    let warm = client.execute("SELECT 1".into(), None).await.unwrap();
    drain(&mut client, warm).await.unwrap();
    let before = server.peak_rss_kib();
    let sql = "SELECT v, v * 2 AS w, v * 3 AS x FROM generate_series(1, 10000000) a(v)";
    let info = client.execute(sql.into(), None).await.unwrap();
    let rows = drain(&mut client, info).await.unwrap();
    assert_eq!(rows, 10_000_000);
    let grown_mib = (server.peak_rss_kib() - before) / 1024;
    // Held whole, the result is 240 MB of values alone (more as Flight messages).
    eprintln!("server peak RSS grew by {grown_mib} MiB streaming 10M rows");
    assert!(grown_mib < 120, "server peak RSS grew by {grown_mib} MiB");
}
