//! Running SQL for Flight SQL: planning a statement into a `FlightInfo`, streaming its results
//! for `DoGet`, and binding prepared-statement parameters.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::Status;
use tributary_engine::{Engine, count_schema, is_write};

use crate::error::{status_of, status_of_datafusion};
use crate::flight::edge::{client_schema, to_client_batch};
use crate::flight::handle::Handle;

/// Largest Flight message sent: gRPC clients' default limit is 4 MiB, so stay under it.
pub(crate) const FLIGHT_DATA_BYTES_MAX: usize = 2 * 1024 * 1024;

/// The stream type `DoGet` answers with.
pub(crate) type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// A query planned down to its physical plan by `GetFlightInfo`, that its `DoGet` may run
/// without planning again.
pub(crate) struct Planned {
    /// The query's run id (in its ticket).
    pub(crate) id: u128,
    /// The physical plan.
    pub(crate) plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    /// The schema the `FlightInfo` announced.
    pub(crate) schema: SchemaRef,
}

/// Plans a handle's statement. A write runs now (DDL must have happened when `execute` returns)
/// and the ticket carries its row count; a query's ticket carries the SQL to run at `DoGet`,
/// and its physical plan comes back for the `DoGet` that follows.
pub(crate) async fn flight_info(
    engine: &Engine,
    ctx: &SessionContext,
    handle: Handle,
    descriptor: FlightDescriptor,
    timeout: Option<std::time::Duration>,
) -> Result<(FlightInfo, Option<Planned>), Status> {
    let mut planned = None;
    let (schema, ticket_handle) = match handle {
        Handle::Query { sql, parameters } => {
            let plan = engine
                .plan_with_params(ctx, &sql, param_values(parameters.as_ref())?)
                .await
                .map_err(status_of)?;
            if is_write(&plan) {
                let count = within(timeout, "statement", async {
                    engine.execute_write(ctx, plan).await.map_err(status_of)
                })
                .await?;
                (count_schema(), Handle::Written { count })
            } else {
                let physical = engine.prepare_query(ctx, &plan).await.map_err(status_of)?;
                let schema = client_schema(plan.schema().as_arrow());
                let id = crate::flight::handle::new_query_id();
                planned = physical.map(|plan| Planned {
                    id,
                    plan,
                    schema: Arc::clone(&schema),
                });
                (
                    schema,
                    Handle::Run {
                        id,
                        query: Box::new(Handle::Query { sql, parameters }),
                    },
                )
            }
        }
        written @ Handle::Written { .. } => (count_schema(), written),
        Handle::Run { query, .. } => {
            return Box::pin(flight_info(engine, ctx, *query, descriptor, timeout)).await;
        }
    };
    let ticket = TicketStatementQuery {
        statement_handle: ticket_handle.encode()?,
    };
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(&schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(-1)
        .with_total_bytes(-1);
    Ok((info, planned))
}

/// Runs work (planning, a write) within the time limit.
pub(crate) async fn within<T>(
    timeout: Option<std::time::Duration>,
    what: &str,
    work: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let Some(limit) = timeout else {
        return work.await;
    };
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(past_time_limit(what, limit)))
}

/// The answer to a `what` (query, statement) stopped at its time limit.
pub(crate) fn past_time_limit(what: &str, limit: std::time::Duration) -> Status {
    Status::deadline_exceeded(format!(
        "the {what} ran past its time limit of {} s (--query-timeout-secs) and was stopped",
        limit.as_secs()
    ))
}

/// Streams a ticket's results, converted to the schema its `FlightInfo` announced.
pub(crate) async fn do_get(
    engine: &Engine,
    ctx: &SessionContext,
    handle: Handle,
) -> Result<FlightDataStream, Status> {
    match handle {
        Handle::Run { query, .. } => Box::pin(do_get(engine, ctx, *query)).await,
        Handle::Written { count } => Ok(encode_batches(
            count_schema(),
            futures::stream::iter([Ok(tributary_engine::dml::count_batch(count))]),
        )),
        Handle::Query { sql, parameters } => {
            let plan = engine
                .plan_with_params(ctx, &sql, param_values(parameters.as_ref())?)
                .await
                .map_err(status_of)?;
            let schema = if is_write(&plan) {
                count_schema()
            } else {
                client_schema(plan.schema().as_arrow())
            };
            let stream = engine.execute(ctx, plan).await.map_err(status_of)?;
            Ok(client_stream(stream, schema))
        }
    }
}

/// Encodes a result stream as Flight data of `schema` (a [`client_schema`]).
pub(crate) fn client_stream(
    stream: datafusion::execution::SendableRecordBatchStream,
    schema: SchemaRef,
) -> FlightDataStream {
    let target = Arc::clone(&schema);
    let batches = stream.map(move |batch| {
        let batch = batch.map_err(|e| FlightError::from(status_of_datafusion(e)))?;
        Ok(to_client_batch(&batch, &target)?)
    });
    encode_batches(schema, batches)
}

/// Encodes batches as Flight data, each message at most [`FLIGHT_DATA_BYTES_MAX`].
pub(crate) fn encode_batches(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> FlightDataStream {
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(FLIGHT_DATA_BYTES_MAX)
            .build(batches)
            .map_err(Status::from),
    )
}

/// Reads the record batches a client sent with `DoPut`.
pub(crate) async fn read_batches(
    stream: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<Vec<RecordBatch>, Status> {
    let decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
        stream.map_err(FlightError::from),
    );
    decoded.try_collect().await.map_err(upload_status)
}

/// The status a client's upload that cannot be read is answered with: the transport's own, or
/// the decoding error.
pub(crate) fn upload_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!("cannot read the uploaded batches: {other}")),
    }
}

/// The parameter rows a client bound with `DoPut`, as one batch (`None` if it sent none).
pub(crate) async fn read_parameters(
    stream: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<Option<RecordBatch>, Status> {
    let batches = read_batches(stream).await?;
    match batches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => arrow::compute::concat_batches(&many[0].schema(), many)
            .map(Some)
            .map_err(|e| Status::invalid_argument(e.to_string())),
    }
}

/// Parameters for one execution: the first (only) row of the bound batch, by position.
pub(crate) fn param_values(
    parameters: Option<&RecordBatch>,
) -> Result<Option<ParamValues>, Status> {
    let Some(batch) = parameters else {
        return Ok(None);
    };
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "bind exactly one row of parameters per query execution (got {})",
            batch.num_rows()
        )));
    }
    row_params(batch, 0).map(Some)
}

/// Parameters from one row of a bound batch, by position (`$1` is the first column).
pub(crate) fn row_params(batch: &RecordBatch, row: usize) -> Result<ParamValues, Status> {
    let values = batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, row))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(format!("cannot read parameter: {e}")))?;
    Ok(ParamValues::from(values))
}

/// Decodes a ticket that `flight_info` produced.
pub(crate) fn ticket_handle(ticket: &TicketStatementQuery) -> Result<Handle, Status> {
    Handle::decode(&ticket.statement_handle)
}

/// Wraps a command for a ticket, so `DoGet` dispatches back to the matching metadata call.
pub(crate) fn command_ticket(command: &impl ProstMessageExt) -> Ticket {
    Ticket::new(command.as_any().encode_to_vec())
}

/// Runs a write with each row of `parameters` bound in turn (or once without); returns the total
/// rows changed.
pub(crate) async fn execute_update(
    engine: &Engine,
    ctx: &SessionContext,
    sql: &str,
    parameters: Option<&RecordBatch>,
    timeout: Option<std::time::Duration>,
) -> Result<i64, Status> {
    let rows: Vec<Option<ParamValues>> = match parameters {
        None => vec![None],
        Some(batch) => (0..batch.num_rows())
            .map(|row| row_params(batch, row).map(Some))
            .collect::<Result<_, _>>()?,
    };
    let mut total = 0u64;
    for params in rows {
        let plan = engine
            .plan_with_params(ctx, sql, params)
            .await
            .map_err(status_of)?;
        if !is_write(&plan) {
            return Err(Status::invalid_argument(
                "not a statement that changes data: run queries with CommandStatementQuery",
            ));
        }
        total += within(timeout, "statement", async {
            engine.execute_write(ctx, plan).await.map_err(status_of)
        })
        .await?;
    }
    i64::try_from(total).map_err(|_| Status::internal("row count overflow"))
}
