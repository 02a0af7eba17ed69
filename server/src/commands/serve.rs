//! `tributary serve`: opens the data root and serves Flight SQL and the HTTP collection API
//! until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use axum::serve::ListenerExt;
use clap::Args;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use tributary_catalog::{DEFAULT_TENANT, S3Options, Storage};
use tributary_engine::{Engine, WriteOptions};

use crate::error::{Error, Result};
use crate::flight::{FlightOptions, QueryLimits, TributaryFlightSql};
use crate::http::{self, write_keys::KeyRing};
use crate::tls::{TlsArgs, TlsListener};

/// Largest gRPC message accepted from clients (bulk loads send large batches).
const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Options of `tributary serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where tables live: a directory, file://…, s3://bucket/prefix or memory://.
    #[arg(long, env = "TRIBUTARY_DATA", default_value = "./tributary-data")]
    pub data: String,

    /// Address of the Flight SQL server (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "TRIBUTARY_FLIGHT_ADDR", default_value = "127.0.0.1:50051")]
    pub flight_addr: SocketAddr,

    /// Address of the HTTP collection API (Segment-compatible; port 0 picks a free port).
    #[arg(long, env = "TRIBUTARY_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Write path settings.
    #[command(flatten)]
    pub write: WriteArgs,

    /// Table type reported to clients: "TABLE" (JDBC) or "BASE TABLE" (ODBC, Power BI).
    #[arg(long, env = "TRIBUTARY_TABLE_TYPE_LABEL", default_value = "TABLE")]
    pub table_type_label: String,

    /// Longest a query or statement may run (seconds; 0: no limit).
    #[arg(long, env = "TRIBUTARY_QUERY_TIMEOUT_SECS", default_value_t = 300)]
    pub query_timeout_secs: u64,

    /// Memory one query may use (MiB; 0: no limit). Sorts, aggregations and joins spill to
    /// disk past it; other work fails with "Resources exhausted".
    #[arg(long, env = "TRIBUTARY_QUERY_MEMORY_MB", default_value_t = 0)]
    pub query_memory_mb: usize,

    /// Queries one user may run at once over Flight SQL.
    #[arg(long, env = "TRIBUTARY_MAX_QUERIES_PER_USER", default_value_t = 16)]
    pub max_queries_per_user: usize,

    /// How long (seconds) running queries may take to finish after SIGTERM or Ctrl-C (idle
    /// client connections do not wait).
    #[arg(long, env = "TRIBUTARY_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// How long (seconds) a login token from the Flight SQL handshake works.
    #[arg(long, env = "TRIBUTARY_TOKEN_LIFETIME_SECS", default_value_t = 12 * 3600)]
    pub token_lifetime_secs: u64,

    /// A Ballista cluster (df://host:port of a `tributary scheduler`) to run read queries on;
    /// writes, metadata and queries that read no table stay here.
    #[arg(long, env = "TRIBUTARY_CLUSTER")]
    pub cluster: Option<String>,

    /// S3-compatible store settings.
    #[command(flatten)]
    pub s3: S3Args,

    /// TLS settings.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Settings of the durable write path.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Directory of the write-ahead log, on a local disk [default: <data>/_tributary/wal for a
    /// local data directory, ./tributary-wal for S3].
    #[arg(long, env = "TRIBUTARY_WAL_DIR")]
    pub wal_dir: Option<std::path::PathBuf>,
    /// Longest time (milliseconds) acknowledged rows wait in memory before their Delta commit.
    #[arg(long, env = "TRIBUTARY_FLUSH_INTERVAL_MS", default_value_t = 2000)]
    pub flush_interval_ms: u64,
    /// A table's buffered rows are committed once they take this much memory (MiB).
    #[arg(long, env = "TRIBUTARY_FLUSH_MAX_MB", default_value_t = 32)]
    pub flush_max_mb: usize,
    /// Memory (MiB) the write buffer may hold; writes beyond it get 503 / UNAVAILABLE.
    #[arg(long, env = "TRIBUTARY_BUFFER_MAX_MB", default_value_t = 512)]
    pub buffer_max_mb: usize,
    /// A write this large (MiB) skips the log and is one Delta commit of its own; an upload
    /// larger than this is spilled by partition to the log's disk as it arrives instead of held
    /// in memory (docs/collection.md, "Bulk loads").
    #[arg(long, env = "TRIBUTARY_DIRECT_COMMIT_MB", default_value_t = 16)]
    pub direct_commit_mb: usize,
    /// An upload larger than `--direct-commit-mb` keeps up to this much (MiB) of its rows in
    /// memory while it arrives; past it, they are spilled to the log's disk (0: always).
    #[arg(long, env = "TRIBUTARY_LOAD_MEMORY_MB", default_value_t = 256)]
    pub load_memory_mb: usize,
    /// A table's small files are merged after this many flushes (0: never); `events` files are
    /// rewritten sorted (docs/data-model.md, "On storage").
    #[arg(long, env = "TRIBUTARY_COMPACT_AFTER_FLUSHES", default_value_t = 20)]
    pub compact_after_flushes: usize,
    /// How long (hours) a messageId is remembered to drop retried events.
    #[arg(long, env = "TRIBUTARY_DEDUP_WINDOW_HOURS", default_value_t = 168)]
    pub dedup_window_hours: u64,
    /// How often (seconds) `profiles` is rebuilt for tenants whose data changed (0: only by
    /// `CALL refresh_profiles()`).
    #[arg(long, env = "TRIBUTARY_PROFILE_REFRESH_SECS", default_value_t = 60)]
    pub profile_refresh_secs: u64,
    /// How often (milliseconds) commits other servers made on the same data root are looked
    /// for and shown (0: never; this server is the root's only writer and reader).
    #[arg(long, env = "TRIBUTARY_FOLLOW_STORAGE_MS", default_value_t = 1000)]
    pub follow_storage_ms: u64,
}

impl WriteArgs {
    fn options(&self, storage: &Storage) -> WriteOptions {
        let mut options = WriteOptions::for_storage(storage);
        if let Some(dir) = &self.wal_dir {
            options.wal_dir = Some(dir.clone());
        }
        options.flush_interval = Duration::from_millis(self.flush_interval_ms.max(1));
        options.buffer_bytes_max = self.buffer_max_mb.max(1) * 1024 * 1024;
        options.flush_bytes = self.flush_max_mb.max(1) * 1024 * 1024;
        options.direct_commit_bytes = self.direct_commit_mb.max(1) * 1024 * 1024;
        options.load_memory_bytes = self.load_memory_mb * 1024 * 1024;
        options.dedup_window = Duration::from_secs(self.dedup_window_hours * 3600);
        options.compact_after_commits = self.compact_after_flushes;
        options.profile_refresh = Duration::from_secs(self.profile_refresh_secs);
        options.follow_interval = Duration::from_millis(self.follow_storage_ms);
        options
    }
}

/// S3-compatible storage options; each falls back to the usual AWS_* environment variable.
#[derive(Debug, Args)]
pub struct S3Args {
    /// S3 endpoint, e.g. http://127.0.0.1:9000 for a local S3-compatible server.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Address buckets as bucket.endpoint instead of endpoint/bucket (path style, the default).
    #[arg(long)]
    pub s3_virtual_hosted_style: bool,
}

impl From<&S3Args> for S3Options {
    fn from(args: &S3Args) -> Self {
        Self {
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            access_key_id: args.s3_access_key_id.clone(),
            secret_access_key: args.s3_secret_access_key.clone(),
            virtual_hosted_style: args.s3_virtual_hosted_style,
        }
    }
}

/// Runs the server until a shutdown signal.
pub async fn run(args: ServeArgs) -> Result<()> {
    let storage = Storage::parse(&args.data, &S3Options::from(&args.s3))?;
    // Bad TLS files fail the start, not the first client.
    let flight_tls = args.tls.tonic()?;
    let http_tls = args.tls.rustls()?;
    let options = args.write.options(&storage);
    let engine = Engine::open_with(storage.clone(), options)
        .await?
        .with_query_memory_limit(
            (args.query_memory_mb > 0).then(|| args.query_memory_mb * 1024 * 1024),
        );
    let engine = match &args.cluster {
        Some(url) => engine.with_remote(std::sync::Arc::new(
            tributary_cluster::client::Cluster::new(
                url,
                crate::commands::cluster::store_of(&storage)?,
            )?,
        )),
        None => engine,
    };
    let open = engine
        .directory()
        .is_open()
        .await
        .map_err(tributary_engine::Error::from)?;
    if open
        && let Some(public) = [args.flight_addr, args.http_addr]
            .into_iter()
            .find(|a| !a.ip().is_loopback())
    {
        return Err(Error::BadInput(format!(
            "refusing to listen on {public} with no users: anyone reaching it could read \
                 and change every tenant. Make a superuser first (`tributary user add NAME \
                 --superuser --data {}`), or listen on 127.0.0.1",
            args.data
        )));
    }
    let segment_scheduler = engine.start_segment_scheduler();
    let deliverer = engine.start_deliverer();
    let keys = Arc::new(KeyRing::open(storage).await?);
    let (http_listener, http_routes) =
        http::bind(engine.clone(), Arc::clone(&keys), args.http_addr).await?;
    let http_addr = http_listener.local_addr()?;
    let listener = TcpListener::bind(args.flight_addr)
        .await
        .map_err(|e| Error::Connect {
            address: args.flight_addr.to_string(),
            reason: format!("cannot listen: {e}"),
        })?;
    let addr = listener.local_addr()?;
    let service = TributaryFlightSql::new(
        engine.clone(),
        FlightOptions {
            table_type_label: args.table_type_label,
            token_lifetime: Duration::from_secs(args.token_lifetime_secs.max(1)),
            limits: QueryLimits {
                timeout: (args.query_timeout_secs > 0)
                    .then(|| Duration::from_secs(args.query_timeout_secs)),
                per_user: args.max_queries_per_user.max(1),
            },
        },
    );
    let flight_monitor = service.clone();
    let server = FlightServiceServer::new(service)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX);
    // Tests and scripts wait for this exact line.
    println!(
        "Tributary Flight SQL listening on {addr} (data: {}{})",
        args.data,
        if args.tls.enabled() { ", TLS" } else { "" }
    );
    if open {
        println!(
            "No users configured: every local client has every right (make one with \
             `tributary user add NAME --superuser`)"
        );
    }
    if keys.is_open() {
        println!(
            "No write keys configured: any write key sends events to tenant '{DEFAULT_TENANT}' \
             (create keys with `tributary write-key create --tenant T`)"
        );
    }
    // Printed last: tests and scripts wait for both addresses.
    println!("Tributary HTTP collection API listening on {http_addr}");
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http_stopped = async {
        let _ = http_stop_rx.await;
    };
    let http_service = http_routes.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let http_serving = match http_tls {
        Some(config) => tokio::spawn(
            axum::serve(
                TlsListener::new(http_listener, config)?.tap_io(|_| {}),
                http_service,
            )
            .with_graceful_shutdown(http_stopped)
            .into_future(),
        ),
        None => tokio::spawn(
            // Small replies must not wait for Nagle's algorithm to meet the client's delayed ACK.
            axum::serve(
                http_listener.tap_io(|stream| {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::warn!("cannot set TCP_NODELAY on an HTTP connection: {e}");
                    }
                }),
                http_service,
            )
            .with_graceful_shutdown(http_stopped)
            .into_future(),
        ),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(config) = flight_tls {
        builder = builder.tls_config(config)?;
    }
    let serving = tokio::spawn(
        builder
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            // JDBC sends its URL parameters as headers; the default 8 KiB list is too small.
            .http2_max_header_list_size(64 * 1024)
            // Bulk loads: HTTP/2's default 64 KiB flow-control windows throttle large uploads.
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024))
            .add_service(server)
            // tonic's own `tcp_nodelay` only reaches sockets it accepts itself: set it on ours, or
            // every small reply waits ~40 ms for Nagle's algorithm and the delayed ACK.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    let _ = stop_rx.await;
                },
            ),
    );
    shutdown_signal().await;
    segment_scheduler.abort();
    deliverer.abort();
    let _ = stop_tx.send(());
    let _ = http_stop_tx.send(());
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    let _ = tokio::time::timeout(grace, http_serving).await;
    // Running queries get a grace period; idle client connections do not hold the exit (tonic's
    // graceful stop would wait for every connection to close).
    let deadline = tokio::time::Instant::now() + grace;
    let mut serving = serving;
    loop {
        if serving.is_finished() {
            match (&mut serving).await {
                Ok(result) => result?,
                Err(join_error) => {
                    return Err(Error::BadInput(format!("server task failed: {join_error}")));
                }
            }
            break;
        }
        if flight_monitor.running_queries() == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("queries still running after the grace period; exiting");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not needed for durability (the log has every acknowledged row), but a clean stop leaves
    // nothing to replay.
    if let Err(e) = engine.flush().await {
        tracing::warn!("buffered rows stay in the write-ahead log until the next start: {e}");
    }
    println!("Tributary stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
