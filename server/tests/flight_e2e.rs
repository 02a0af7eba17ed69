//! End-to-end: starts the real `tributary serve` binary on a free loopback port with a temporary
//! data directory and talks to it with the Rust `arrow-flight` Flight SQL client, like a BI tool.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use arrow_flight::{FlightInfo, decode::FlightRecordBatchStream};
use futures::TryStreamExt;
use tonic::transport::Channel;

mod support;
use support::Server;

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("endpoint has a ticket");
        let stream: FlightRecordBatchStream = client.do_get(ticket).await.expect("do_get");
        batches.extend(stream.try_collect::<Vec<_>>().await.expect("stream"));
    }
    batches
}

/// Makes a metadata call, then fetches its result (two steps: both borrow the client).
macro_rules! fetch_call {
    ($client:ident, $call:expr $(,)?) => {{
        let info = $call;
        fetch(&mut $client, info)
    }};
}

async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = client.execute(sql.to_string(), None).await.expect(sql);
    fetch(client, info).await
}

fn column_i64(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let array = arrow::compute::cast(b.column(column), &DataType::Int64).unwrap();
            array.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

/// The gRPC status of a failed call, as "Code: message".
fn error_of<T: std::fmt::Debug>(result: Result<T, arrow_flight::error::FlightError>) -> String {
    match result.expect_err("expected an error") {
        arrow_flight::error::FlightError::Tonic(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => panic!("expected a gRPC status, got {other}"),
    }
}

#[tokio::test]
async fn queries_metadata_prepared_statements_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut client = server.client().await;

    // A plain query.
    assert_eq!(column_i64(&query(&mut client, "SELECT 1").await, 0), [1]);

    // DDL runs at execute time, before any DoGet.
    client
        .execute(
            "CREATE TABLE scores (player VARCHAR, points BIGINT)".into(),
            None,
        )
        .await
        .unwrap();
    let tables = query(
        &mut client,
        "SELECT table_name FROM information_schema.tables WHERE table_name = 'scores'",
    )
    .await;
    assert_eq!(tables.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);

    // CommandStatementUpdate returns the row count.
    let inserted = client
        .execute_update(
            "INSERT INTO scores VALUES ('ann', 10), ('bob', 20), ('cy', 30)".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(inserted, 3);

    // Strings reach clients as Utf8, never Utf8View, and FlightInfo's schema is the data's.
    let info = client
        .execute(
            "SELECT player, points FROM scores ORDER BY points".into(),
            None,
        )
        .await
        .unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    assert_eq!(announced.field(0).data_type(), &DataType::Utf8);
    let batches = fetch(&mut client, info).await;
    assert_eq!(batches[0].schema().fields(), announced.fields());
    assert_eq!(column_i64(&batches, 1), [10, 20, 30]);

    // A prepared statement with a parameter bound over DoPut.
    let mut prepared = client
        .prepare("SELECT count(*) FROM scores WHERE points > $1".into(), None)
        .await
        .unwrap();
    let params = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![15]))],
    )
    .unwrap();
    prepared.set_parameters(params).unwrap();
    let info = prepared.execute().await.unwrap();
    assert_eq!(column_i64(&fetch(&mut client, info).await, 0), [2]);
    prepared.close().await.unwrap();

    // Metadata calls.
    let catalogs = fetch_call!(client, client.get_catalogs().await.unwrap()).await;
    let names: Vec<String> = catalogs[0]
        .column(0)
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(String::from)
        .collect();
    assert_eq!(names, ["default"]);
    let schemas = fetch_call!(
        client,
        client
            .get_db_schemas(CommandGetDbSchemas {
                catalog: None,
                db_schema_filter_pattern: Some("pub%".into()),
            })
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        schemas[0].num_rows(),
        1,
        "LIKE pattern on schemas is honoured"
    );
    let tables = fetch_call!(
        client,
        client
            .get_tables(CommandGetTables {
                catalog: None,
                db_schema_filter_pattern: Some("public".into()),
                table_name_filter_pattern: Some("sc%".into()),
                table_types: vec![],
                include_schema: true,
            })
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tables[0].num_rows(), 1);
    let schema_bytes = tables[0].column(4).as_binary::<i32>().value(0);
    let decoded = arrow::ipc::convert::try_schema_from_ipc_buffer(schema_bytes).unwrap();
    assert_eq!(
        decoded
            .field(0)
            .metadata()
            .get("ARROW:FLIGHT:SQL:TYPE_NAME")
            .map(String::as_str),
        Some("VARCHAR")
    );
    let types = fetch_call!(client, client.get_table_types().await.unwrap()).await;
    assert!(types[0].num_rows() >= 2);
    let info = fetch_call!(
        client,
        client
            .get_sql_info(vec![
                SqlInfo::FlightSqlServerName,
                SqlInfo::SqlIdentifierQuoteChar
            ])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info[0].num_rows(), 2);
    let xdbc = fetch_call!(
        client,
        client
            .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
            .await
            .unwrap(),
    )
    .await;
    assert!(xdbc[0].num_rows() > 5);
    let keys = fetch_call!(
        client,
        client
            .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
                catalog: None,
                db_schema: None,
                table: "scores".into(),
            })
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(keys.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);

    // Errors: the engine's class as the status (InvalidArgument, NotFound…) with its message;
    // the connection stays usable and nothing changed.
    let bad_sql = error_of(client.execute("SELEC 1".into(), None).await);
    assert!(
        bad_sql.contains("InvalidArgument") && bad_sql.contains("SQL error"),
        "{bad_sql}"
    );
    let unknown = error_of(client.execute("SELECT * FROM missing".into(), None).await);
    assert!(
        unknown.contains("NotFound") && unknown.contains("missing"),
        "{unknown}"
    );
    let bad_insert = error_of(
        client
            .execute_update(
                "INSERT INTO scores VALUES ('x', 'not a number')".into(),
                None,
            )
            .await,
    );
    assert!(bad_insert.contains("InvalidArgument"), "{bad_insert}");
    let other_tenant = error_of(
        client
            .execute("SELECT * FROM nobody.public.t".into(), None)
            .await,
    );
    assert!(other_tenant.contains("NotFound"), "{other_tenant}");
    assert_eq!(
        column_i64(&query(&mut client, "SELECT count(*) FROM scores").await, 0),
        [3]
    );
}

#[tokio::test]
async fn tables_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let mut client = server.client().await;
    client
        .execute(
            "CREATE TABLE kept AS SELECT * FROM (VALUES (1), (2), (3)) AS t(v)".into(),
            None,
        )
        .await
        .unwrap();
    client
        .execute_update("DELETE FROM kept WHERE v = 2".into(), None)
        .await
        .unwrap();
    drop(client);
    server.stop();

    let server = Server::start(&data, &[]);
    let mut client = server.client().await;
    let rows = query(&mut client, "SELECT v FROM kept ORDER BY v").await;
    assert_eq!(column_i64(&rows, 0), [1, 3]);
    let events = query(&mut client, "SELECT count(*) FROM events").await;
    assert_eq!(events[0].column(0).len(), 1);
}
