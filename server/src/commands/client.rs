//! A small Flight SQL client for the command line (`tributary sql`, `tributary import`): it
//! speaks the same protocol as any BI tool and reports the server's message on errors.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{
    CommandStatementIngest, CommandStatementQuery, DoPutUpdateResult, ProstMessageExt,
    TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use arrow_flight::{FlightDescriptor, FlightInfo};
use clap::Args;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::flight::{AUTHORIZATION, EXPECTED_ROWS, TENANT_HEADER};

/// Largest message accepted from the server (results are sent in ≤ 2 MiB messages).
const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Where the server is, for client commands.
#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    /// Flight SQL server to talk to.
    #[arg(
        long,
        env = "TRIBUTARY_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,

    /// Tenant to run in [default: the user's; `default` on a server without users].
    #[arg(long, env = "TRIBUTARY_TENANT")]
    pub tenant: Option<String>,

    /// Log in as this user (the password is asked, or read from TRIBUTARY_PASSWORD).
    #[arg(long, env = "TRIBUTARY_USER")]
    pub user: Option<String>,

    /// PEM certificate of the CA that signed the server's TLS certificate (connects with TLS;
    /// `--server https://host:port` does too).
    #[arg(long, env = "TRIBUTARY_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// Log in with a token from an earlier login instead.
    #[arg(
        long,
        env = "TRIBUTARY_TOKEN",
        hide_env_values = true,
        conflicts_with = "user"
    )]
    pub token: Option<String>,
}

/// A connection to a Tributary server.
#[derive(Debug, Clone)]
pub struct Client {
    inner: FlightServiceClient<Channel>,
    tenant: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    /// Connects to the server.
    pub async fn connect(args: &ConnectArgs) -> Result<Self> {
        let address = if args.server.contains("://") {
            args.server.clone()
        } else {
            format!("http://{}", args.server)
        };
        let address = match (&args.tls_ca, address.strip_prefix("http://")) {
            (Some(_), Some(rest)) => format!("https://{rest}"),
            _ => address,
        };
        let connect_error = |reason: String| Error::Connect {
            address: address.clone(),
            reason,
        };
        let mut endpoint =
            Channel::from_shared(address.clone()).map_err(|e| connect_error(e.to_string()))?;
        if let Some(ca) = &args.tls_ca {
            let pem = std::fs::read(ca).map_err(|e| Error::File {
                path: ca.display().to_string(),
                source: e,
            })?;
            crate::tls::use_ring_by_default();
            endpoint = endpoint
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
                )
                .map_err(|e| connect_error(e.to_string()))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| connect_error(format!("{e} (is `tributary serve` running?)")))?;
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX);
        let tenant = args
            .tenant
            .as_deref()
            .map(|t| {
                t.parse()
                    .map_err(|_| Error::BadInput(format!("invalid tenant name '{t}'")))
            })
            .transpose()?;
        let mut client = Self {
            inner,
            tenant,
            authorization: None,
        };
        if let Some(token) = &args.token {
            client.authorization = Some(header_value(&format!("Bearer {token}"))?);
        } else if let Some(user) = &args.user {
            let password = crate::commands::user::read_password(user, false)?;
            client.log_in(user, &password).await?;
        }
        Ok(client)
    }

    /// The Flight SQL handshake with basic credentials; later calls carry the token it returns.
    async fn log_in(&mut self, user: &str, password: &str) -> Result<()> {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut request = tonic::Request::new(futures::stream::iter([
            arrow_flight::HandshakeRequest::default(),
        ]));
        request
            .metadata_mut()
            .insert(AUTHORIZATION, header_value(&format!("Basic {basic}"))?);
        let response = self.inner.handshake(request).await?;
        self.authorization = response.metadata().get(AUTHORIZATION).cloned();
        if self.authorization.is_none() {
            return Err(Error::BadInput(
                "the server answered the login without a token (it has no users?)".into(),
            ));
        }
        Ok(())
    }

    fn request<T>(&self, message: T) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        if let Some(tenant) = &self.tenant {
            request.metadata_mut().insert(TENANT_HEADER, tenant.clone());
        }
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        Ok(request)
    }

    /// Plans a statement on the server (writes run here) and returns its `FlightInfo`.
    pub async fn flight_info(&mut self, sql: &str) -> Result<FlightInfo> {
        let command = CommandStatementQuery {
            query: sql.to_string(),
            transaction_id: None,
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let request = self.request(descriptor)?;
        Ok(self.inner.get_flight_info(request).await?.into_inner())
    }

    /// Runs a statement and collects its result.
    pub async fn query(&mut self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let info = self.flight_info(sql).await?;
        let schema = std::sync::Arc::new(info.clone().try_decode_schema()?);
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let request = self.request(ticket)?;
            let stream = self.inner.do_get(request).await?.into_inner();
            let mut decoded =
                FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
            while let Some(batch) = decoded.next().await {
                batches.push(batch?);
            }
        }
        Ok((schema, batches))
    }

    /// Appends batches to a table (created if missing) in one commit; returns the rows written.
    pub async fn ingest(&mut self, table: &str, batches: Vec<RecordBatch>) -> Result<i64> {
        let rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
        let batches = futures::stream::iter(batches.into_iter().map(Ok));
        self.ingest_stream(table, batches, rows).await
    }

    /// The same, with batches sent as `batches` yields them (a large file need not be held in
    /// memory); `rows` is how many it will yield. The server commits once the stream ends, and
    /// only if it received all `rows` ([`EXPECTED_ROWS`]); on an error in the stream the upload
    /// stops there (so nothing is committed) and the error is returned.
    pub async fn ingest_stream(
        &mut self,
        table: &str,
        batches: impl Stream<Item = Result<RecordBatch>> + Send + 'static,
        rows: u64,
    ) -> Result<i64> {
        let command = CommandStatementIngest {
            table_definition_options: Some(TableDefinitionOptions {
                if_not_exist: TableNotExistOption::Create.into(),
                if_exists: TableExistsOption::Append.into(),
            }),
            table: table.to_string(),
            schema: None,
            catalog: self
                .tenant
                .as_ref()
                .and_then(|t| t.to_str().ok())
                .map(str::to_string),
            temporary: false,
            transaction_id: None,
            options: [(EXPECTED_ROWS.to_string(), rows.to_string())].into(),
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        // An error in the input must not end the upload as if it were complete (the server
        // would commit what it got): the stream stops there, and the call is dropped below.
        let (failed, failure) = tokio::sync::oneshot::channel::<Error>();
        let upload = futures::stream::unfold(
            (Box::pin(batches), Some(failed)),
            |(mut batches, mut failed)| async move {
                match batches.next().await {
                    Some(Ok(batch)) => Some((Ok::<_, FlightError>(batch), (batches, failed))),
                    Some(Err(error)) => {
                        if let Some(failed) = failed.take() {
                            let _ = failed.send(error);
                        }
                        std::future::pending().await
                    }
                    None => None,
                }
            },
        );
        let data = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(upload)
            .map(|r| r.expect("encoding in-memory batches"));
        let request = self.request(data)?;
        let call = async {
            let mut results = self.inner.do_put(request).await?.into_inner();
            let mut rows = 0;
            while let Some(result) = results.message().await? {
                rows += DoPutUpdateResult::decode(result.app_metadata)
                    .map_err(|e| Error::BadInput(format!("malformed answer from server: {e}")))?
                    .record_count;
            }
            Ok(rows)
        };
        tokio::select! {
            rows = call => rows,
            Ok(error) = failure => Err(error),
        }
    }
}

fn header_value(text: &str) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    text.parse()
        .map_err(|_| Error::BadInput("a credential that is not text".into()))
}
