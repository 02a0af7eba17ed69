//! The Flight SQL service: arrow-flight's `FlightSqlService` over the engine. Every call is
//! authenticated ([`super::auth`]) and runs for one tenant: the one named by the
//! `x-tributary-tenant` header if the caller may see it, else the caller's (`USE`, their grant;
//! `default` on a server without users).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, SqlInfo,
    TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::prelude::SessionContext;
use tonic::{Request, Response, Status, Streaming};
use tributary_catalog::PUBLIC_SCHEMA;
use tributary_engine::{
    Engine, IfTableMissing, StatementClass, WriteMode, access_of, count_schema, is_write, tenant_of,
};

use crate::error::status_of;
use crate::flight::actions;
use crate::flight::auth::{HandshakeStream, authorization, caller, handshake};
use crate::flight::edge::client_schema;
use crate::flight::handle::Handle;
use crate::flight::metadata::{
    XDBC_TYPE_INFO, empty, foreign_keys_schema, list_tables, primary_keys_schema, sql_info,
};
use crate::flight::queries::{Queries, QueryLimits, supervised};
use crate::flight::statements::{
    FlightDataStream, client_stream, command_ticket, do_get, encode_batches, execute_update,
    flight_info, read_parameters, ticket_handle, within,
};
use crate::flight::upload::{EXPECTED_ROWS, UploadTarget, write_upload};
use prost::Message;

/// The header that names the tenant a call runs for.
pub const TENANT_HEADER: &str = "x-tributary-tenant";

/// How the server describes itself to clients, and how long logins last.
#[derive(Debug, Clone)]
pub struct FlightOptions {
    /// Table type reported for Tributary tables: `TABLE` (JDBC, the default) or `BASE TABLE`
    /// (some ODBC clients, Power BI).
    pub table_type_label: String,
    /// How long a token from the handshake works.
    pub token_lifetime: std::time::Duration,
    /// Time limit and concurrency of queries.
    pub limits: QueryLimits,
}

impl Default for FlightOptions {
    fn default() -> Self {
        Self {
            table_type_label: "TABLE".into(),
            token_lifetime: tributary_auth::TOKEN_LIFETIME_DEFAULT,
            limits: QueryLimits::default(),
        }
    }
}

/// The Flight SQL service.
#[derive(Debug, Clone)]
pub struct TributaryFlightSql {
    engine: Engine,
    options: FlightOptions,
    queries: Arc<Queries>,
}

impl TributaryFlightSql {
    /// A service over `engine`.
    pub fn new(engine: Engine, options: FlightOptions) -> Self {
        let queries = Arc::new(Queries::new(options.limits.clone()));
        Self {
            engine,
            options,
            queries,
        }
    }

    /// How many queries are streaming results now (shutdown waits for them, not for idle
    /// connections).
    pub fn running_queries(&self) -> usize {
        self.queries.running()
    }

    /// `GetSqlInfo`'s answers (they name this server's statement time limit).
    fn sql_info(&self) -> arrow_flight::sql::metadata::SqlInfoData {
        let timeout_ms = self
            .timeout()
            .map_or(0, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        sql_info(timeout_ms)
    }

    fn timeout(&self) -> Option<std::time::Duration> {
        self.queries.limits().timeout
    }

    /// The `FlightInfo` of a statement; a query's physical plan is kept for its `DoGet`.
    async fn planned_info(
        &self,
        ctx: &SessionContext,
        handle: Handle,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let (info, planned) =
            flight_info(&self.engine, ctx, handle, descriptor, self.timeout()).await?;
        if let Some(planned) = planned {
            let user = access_of(ctx)
                .map(|a| a.user().to_string())
                .unwrap_or_default();
            self.queries.keep_plan(&user, ctx, planned);
        }
        Ok(info)
    }

    /// Runs a query's `DoGet` under the registry: cancellable, timed, counted for its user.
    async fn run_query(
        &self,
        ctx: &SessionContext,
        handle: Handle,
    ) -> Result<FlightDataStream, Status> {
        let id = match &handle {
            Handle::Run { id, .. } => *id,
            _ => crate::flight::handle::new_query_id(),
        };
        let user = access_of(ctx)
            .map(|a| a.user().to_string())
            .unwrap_or_default();
        let slot = self.queries.start(id, &user)?;
        let timeout = self.timeout();
        if let Some((kept_ctx, planned)) = self.queries.take_plan(id, &user, &tenant_of(ctx)) {
            let stream = self
                .engine
                .execute_physical(&kept_ctx, planned.plan)
                .await
                .map_err(status_of)?;
            return Ok(supervised(
                client_stream(stream, planned.schema),
                slot,
                timeout,
            ));
        }
        let stream = within(timeout, "query", do_get(&self.engine, ctx, handle)).await?;
        Ok(supervised(stream, slot, timeout))
    }

    /// The session of a call, in the tenant of its header (or the caller's).
    async fn session<T>(&self, request: &Request<T>) -> Result<SessionContext, Status> {
        self.session_in(request, None).await
    }

    /// The session of a call in `tenant` (when the call names one in its command), else as
    /// [`Self::session`].
    async fn session_in<T>(
        &self,
        request: &Request<T>,
        tenant: Option<&str>,
    ) -> Result<SessionContext, Status> {
        let access = caller(self.engine.directory(), request).await?;
        let header = request
            .metadata()
            .get(TENANT_HEADER)
            .map(|v| {
                v.to_str()
                    .map_err(|_| Status::invalid_argument(format!("{TENANT_HEADER} is not text")))
            })
            .transpose()?;
        self.engine
            .session_as(access, tenant.or(header))
            .map_err(status_of)
    }

    /// A session in which the caller may change data (ingest, bulk loads).
    async fn writing_session<T>(
        &self,
        request: &Request<T>,
        tenant: Option<&str>,
    ) -> Result<SessionContext, Status> {
        let ctx = self.session_in(request, tenant).await?;
        Engine::require(&ctx, StatementClass::Write).map_err(status_of)?;
        Ok(ctx)
    }

    /// The `FlightInfo` of a metadata command (for a caller who may log in).
    async fn metadata_info(
        &self,
        command: &impl arrow_flight::sql::ProstMessageExt,
        schema: &SchemaRef,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let descriptor = request.into_inner();
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(FlightEndpoint::new().with_ticket(command_ticket(command)))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }
}

fn single_batch<E: std::fmt::Display>(
    batch: Result<RecordBatch, E>,
) -> Result<FlightDataStream, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    Ok(encode_batches(
        batch.schema(),
        futures::stream::iter([Ok(batch)]),
    ))
}

fn schema_bytes(schema: &arrow::datatypes::Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

#[tonic::async_trait]
impl FlightSqlService for TributaryFlightSql {
    type FlightService = Self;

    /// User and password in, bearer token out ([`super::auth::handshake`]).
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        handshake(
            self.engine.directory(),
            self.options.token_lifetime,
            request,
        )
        .await
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ctx = self.session(&request).await?;
        let info = self
            .planned_info(&ctx, Handle::query(query.query), request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ctx = self.session(&request).await?;
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        let info = self
            .planned_info(&ctx, handle, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let ctx = self.session(&request).await?;
        let stream = self.run_query(&ctx, ticket_handle(&ticket)?).await?;
        Ok(Response::new(stream))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let ctx = self.session(&request).await?;
        let handle = Handle::decode(&query.prepared_statement_handle)?;
        Ok(Response::new(self.run_query(&ctx, handle).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let ctx = self.session(&request).await?;
        let plan = self
            .engine
            .plan(&ctx, &query.query)
            .await
            .map_err(status_of)?;
        let dataset_schema = if is_write(&plan) {
            count_schema()
        } else {
            client_schema(plan.schema().as_arrow())
        };
        let mut parameters: Vec<_> = plan
            .get_parameter_fields()
            .map_err(|e| status_of(e.into()))?
            .into_iter()
            .collect();
        parameters.sort_by_key(|(id, _)| {
            id.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let parameter_schema = arrow::datatypes::Schema::new(
            parameters
                .into_iter()
                .map(|(id, field)| match field {
                    Some(field) => field.as_ref().clone().with_name(id),
                    None => {
                        arrow::datatypes::Field::new(id, arrow::datatypes::DataType::Null, true)
                    }
                })
                .collect::<Vec<_>>(),
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Handle::query(query.query).encode()?,
            dataset_schema: schema_bytes(&dataset_schema)?,
            parameter_schema: schema_bytes(&client_schema(&parameter_schema))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Handles carry their statement: there is nothing to release.
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.session(&request).await?;
        let Handle::Query { sql, .. } = Handle::decode(&query.prepared_statement_handle)? else {
            return Err(Status::invalid_argument(
                "parameters bind to a query handle only",
            ));
        };
        let parameters = read_parameters(request.into_inner()).await?;
        let handle = Handle::Query { sql, parameters };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode()?),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let ctx = self.session(&request).await?;
        let Handle::Query { sql, parameters } = Handle::decode(&query.prepared_statement_handle)?
        else {
            return Err(Status::invalid_argument("not an update handle"));
        };
        let bound = read_parameters(request.into_inner()).await?.or(parameters);
        execute_update(&self.engine, &ctx, &sql, bound.as_ref(), self.timeout()).await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let ctx = self.session(&request).await?;
        execute_update(&self.engine, &ctx, &command.query, None, self.timeout()).await
    }

    /// A plain `DoPut` (not a Flight SQL command) whose descriptor is a path: `[table]` or
    /// `[tenant, table]`. The batches are appended through the write path, as an ingest.
    async fn do_put_fallback(
        &self,
        mut request: Request<PeekableFlightDataStream>,
        message: arrow_flight::sql::Any,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoPutStream>,
        Status,
    > {
        let descriptor = std::pin::Pin::new(request.get_mut())
            .peek()
            .await
            .and_then(|first| first.as_ref().ok())
            .and_then(|first| first.flight_descriptor.clone());
        let target = match descriptor {
            Some(d) if d.r#type == arrow_flight::flight_descriptor::DescriptorType::Path as i32 => {
                match d.path.as_slice() {
                    [table] => Ok((None, table.clone())),
                    [tenant, table] => Ok((Some(tenant.clone()), table.clone())),
                    path => Err(Status::invalid_argument(format!(
                        "a DoPut path is [table] or [tenant, table], not {path:?}"
                    ))),
                }
            }
            _ => Err(Status::invalid_argument(format!(
                "unknown DoPut command '{}': send a Flight SQL command, or a path descriptor [table] or [tenant, table]",
                message.type_url
            ))),
        };
        // Who is asking comes first, what they sent next, whether they may write last.
        let path_tenant = target
            .as_ref()
            .ok()
            .and_then(|(tenant, _)| tenant.as_deref());
        let ctx = self.session_in(&request, path_tenant).await?;
        let (_, table) = target?;
        Engine::require(&ctx, StatementClass::Write).map_err(status_of)?;
        let tenant = tenant_of(&ctx);
        let target = UploadTarget {
            tenant: &tenant,
            table: &table,
            if_missing: IfTableMissing::Fail,
            mode: WriteMode::Append,
            expected_rows: None,
        };
        let receipt = write_upload(self.engine.writer(), target, request.into_inner()).await?;
        let result = arrow_flight::sql::DoPutUpdateResult {
            record_count: i64::try_from(receipt.rows).unwrap_or(i64::MAX),
        };
        let answer = arrow_flight::PutResult {
            app_metadata: prost::Message::encode_to_vec(&result).into(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(answer)]))))
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let ctx = self
            .writing_session(&request, command.catalog.as_deref())
            .await?;
        if command
            .schema
            .as_deref()
            .is_some_and(|s| s != PUBLIC_SCHEMA)
        {
            return Err(Status::invalid_argument(format!(
                "schema '{}' does not exist: every tenant has one schema, '{PUBLIC_SCHEMA}'",
                command.schema.unwrap_or_default()
            )));
        }
        if command.temporary {
            return Err(Status::invalid_argument(
                "temporary tables are not supported",
            ));
        }
        let tenant = tenant_of(&ctx);
        let options = command.table_definition_options.unwrap_or_default();
        let if_missing = match options.if_not_exist() {
            TableNotExistOption::Fail => IfTableMissing::Fail,
            TableNotExistOption::Create | TableNotExistOption::Unspecified => {
                IfTableMissing::Create
            }
        };
        let exists = self
            .engine
            .catalog()
            .require_tenant(&tenant)
            .map_err(|e| status_of(e.into()))?
            .has_table(&command.table);
        let mode = match options.if_exists() {
            TableExistsOption::Fail if exists => {
                return Err(Status::already_exists(format!(
                    "table '{tenant}.{PUBLIC_SCHEMA}.{}' already exists",
                    command.table
                )));
            }
            TableExistsOption::Replace if exists => WriteMode::Replace,
            _ => WriteMode::Append,
        };
        let target = UploadTarget {
            tenant: &tenant,
            table: &command.table,
            if_missing,
            mode,
            expected_rows: command.options.get(EXPECTED_ROWS),
        };
        let rows = write_upload(self.engine.writer(), target, request.into_inner())
            .await?
            .rows;
        i64::try_from(rows).map_err(|_| Status::internal("row count overflow"))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(&query, &schema, request).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let ctx = self.session(&request).await?;
        let mut builder: GetCatalogsBuilder = query.into_builder();
        for name in ctx.catalog_names() {
            builder.append(name);
        }
        Ok(Response::new(single_batch(builder.build())?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(&query, &schema, request).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let ctx = self.session(&request).await?;
        let mut builder: GetDbSchemasBuilder = query.into_builder();
        for catalog_name in ctx.catalog_names() {
            if let Some(catalog) = ctx.catalog(&catalog_name) {
                for schema_name in catalog.schema_names() {
                    builder.append(&catalog_name, schema_name);
                }
            }
        }
        Ok(Response::new(single_batch(builder.build())?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(&query, &schema, request).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let ctx = self.session(&request).await?;
        let catalog_filter = query.catalog.clone();
        let mut builder: GetTablesBuilder = query.into_builder();
        for (catalog, schema, table, table_type, columns) in list_tables(
            &ctx,
            catalog_filter.as_deref(),
            &self.options.table_type_label,
        )
        .await?
        {
            builder
                .append(catalog, schema, table, table_type, &columns)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(Response::new(single_batch(builder.build())?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(&query, &schema, request).await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        self.session(&request).await?;
        let mut builder = query.into_builder();
        let mut types = vec![
            self.options.table_type_label.clone(),
            "VIEW".to_string(),
            "SYSTEM TABLE".to_string(),
        ];
        types.sort();
        for table_type in types {
            builder.append(table_type);
        }
        Ok(Response::new(single_batch(builder.build())?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info()).schema();
        self.metadata_info(&query, &schema, request).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        self.session(&request).await?;
        Ok(Response::new(single_batch(
            query.into_builder(&self.sql_info()).build(),
        )?))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&XDBC_TYPE_INFO).schema();
        self.metadata_info(&query, &schema, request).await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        self.session(&request).await?;
        Ok(Response::new(single_batch(
            query.into_builder(&XDBC_TYPE_INFO).build(),
        )?))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(&query, &primary_keys_schema(), request)
            .await
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        self.session(&request).await?;
        Ok(Response::new(single_batch(Ok::<_, Status>(empty(
            primary_keys_schema(),
        )))?))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(&query, &foreign_keys_schema(), request)
            .await
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        self.session(&request).await?;
        Ok(Response::new(single_batch(Ok::<_, Status>(empty(
            foreign_keys_schema(),
        )))?))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(&query, &foreign_keys_schema(), request)
            .await
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        self.session(&request).await?;
        Ok(Response::new(single_batch(Ok::<_, Status>(empty(
            foreign_keys_schema(),
        )))?))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(&query, &foreign_keys_schema(), request)
            .await
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        self.session(&request).await?;
        Ok(Response::new(single_batch(Ok::<_, Status>(empty(
            foreign_keys_schema(),
        )))?))
    }

    /// `CancelFlightInfo` and `CloseSession` (which ends the caller's login).
    async fn do_action_fallback(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoActionStream>,
        Status,
    > {
        self.session(&request).await?;
        let token = match authorization(&request)?.map(tributary_auth::Credential::parse) {
            Some(Ok(tributary_auth::Credential::Bearer(token))) => Some(token),
            _ => None,
        };
        let answer = actions::answer(
            request.get_ref(),
            &self.queries,
            self.engine.directory(),
            token.as_deref(),
        )?;
        let result = arrow_flight::Result {
            body: answer.into(),
        };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn do_action_cancel_query(
        &self,
        query: arrow_flight::sql::ActionCancelQueryRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<arrow_flight::sql::ActionCancelQueryResult, Status> {
        self.session(&request).await?;
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("malformed FlightInfo: {e}")))?;
        actions::cancel(&self.queries, &info)?;
        Ok(arrow_flight::sql::ActionCancelQueryResult {
            // CancelResult::Cancelled
            result: 1,
        })
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<arrow_flight::ActionType, Status>>> {
        Some(vec![
            Ok(arrow_flight::ActionType {
                r#type: "CancelFlightInfo".into(),
                description: "Cancel the query of a FlightInfo".into(),
            }),
            Ok(arrow_flight::ActionType {
                r#type: "CloseSession".into(),
                description: "End this login: its token stops working".into(),
            }),
        ])
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
