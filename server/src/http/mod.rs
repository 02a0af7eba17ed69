//! The HTTP collection API, compatible with the Segment tracking API: SDKs send events here by
//! changing their host. Every request is authorised by its write key (HTTP basic auth, the key
//! as user name), decompressed if gzipped, checked against Segment's size limits, split into
//! messages checked one by one ([`segment`]), and written through the engine's durable write
//! path: the answer comes once the events are in the write-ahead log and visible to queries.
//! Endpoints, limits and errors are documented in docs/collection.md. The segment builder's
//! API shares the port ([`segment_api`]).

pub mod segment;
mod segment_api;
pub mod write_keys;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tributary_engine::{Engine, IfTableMissing, WriteMode};

use crate::error::{Error, Result};
use segment::{BATCH_BYTES_MAX, EVENT_BYTES_MAX, EventRows, MessageType};
use write_keys::{KeyRefusal, KeyRing};

/// Largest request body read at all (compressed or not); the Segment limits apply after
/// decompression and are reported more precisely.
const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

#[derive(Clone)]
struct Collector {
    engine: Engine,
    keys: Arc<KeyRing>,
}

/// Binds the collection API to `addr`: the listener and the routes to serve on it.
pub async fn bind(
    engine: Engine,
    keys: Arc<KeyRing>,
    addr: SocketAddr,
) -> Result<(TcpListener, Router)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| Error::Connect {
        address: addr.to_string(),
        reason: format!("cannot listen: {e}"),
    })?;
    Ok((listener, router(Collector { engine, keys })))
}

fn router(collector: Collector) -> Router {
    let single = |kind: MessageType| {
        post(
            move |State(c): State<Collector>, headers: HeaderMap, body: Bytes| async move {
                collect(c, Some(kind), headers, body).await
            },
        )
    };
    let batch = || {
        post(
            |State(c): State<Collector>, headers: HeaderMap, body: Bytes| async move {
                collect(c, None, headers, body).await
            },
        )
    };
    Router::new()
        .route("/v1/track", single(MessageType::Track))
        .route("/v1/identify", single(MessageType::Identify))
        .route("/v1/page", single(MessageType::Page))
        .route("/v1/screen", single(MessageType::Screen))
        .route("/v1/alias", single(MessageType::Alias))
        .route("/v1/group", single(MessageType::Group))
        .route("/v1/batch", batch())
        .route("/v1/import", batch())
        .route("/health", get(|| async { "ok" }))
        .merge(segment_api::routes(collector.clone()))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(collector)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    write_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyOnly {
    write_key: Option<String>,
}

/// A refused request: its status and what is wrong.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (
            self.0,
            axum::Json(json!({"success": false, "error": self.1})),
        )
            .into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<tributary_engine::Error> for Refusal {
    fn from(error: tributary_engine::Error) -> Self {
        let (status, message) = crate::error::http_status_of(error);
        Self(status, message)
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, message.into())
}

async fn collect(
    collector: Collector,
    kind: Option<MessageType>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match collect_inner(collector, kind, &headers, &body).await {
        Ok(answer) => (StatusCode::OK, axum::Json(answer)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn collect_inner(
    collector: Collector,
    kind: Option<MessageType>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, Refusal> {
    let limit = if kind.is_some() {
        EVENT_BYTES_MAX
    } else {
        BATCH_BYTES_MAX
    };
    let text = decode_body(headers, body, limit, kind.is_none())?;
    let body_key = || {
        serde_json::from_str::<KeyOnly>(&text)
            .ok()
            .and_then(|k| k.write_key)
    };
    let key = basic_auth_user(headers)?.or_else(body_key);
    let destination = collector
        .keys
        .authorize(key.as_deref())
        .await
        .map_err(|refusal| {
            let message = match refusal {
                KeyRefusal::Missing => "no write key: send it as the HTTP basic-auth user name",
                KeyRefusal::Unknown => "unknown write key",
            };
            Refusal(StatusCode::UNAUTHORIZED, message.into())
        })?;
    let mut rows = EventRows::new(tributary_engine::write::now_micros(), &destination.source);
    match kind {
        Some(kind) => rows.add(0, &text, Some(kind), None),
        None => {
            let batch: BatchBody<'_> = serde_json::from_str(&text).map_err(|e| {
                bad_request(format!(
                    "the body is not a batch ({{\"batch\": [messages...]}}): {e}"
                ))
            })?;
            for (index, message) in batch.batch.iter().enumerate() {
                rows.add(index, message.get(), None, batch.context);
            }
            drop(batch.write_key);
        }
    }
    let (events, rejected) = rows.finish();
    if events.num_rows() == 0 {
        let reason = rejected
            .first()
            .map_or("the batch has no messages".to_string(), |r| {
                format!("message {}: {}", r.index, r.error)
            });
        return Err(bad_request(match kind {
            Some(_) => reason,
            None => format!("no message was accepted; {reason}"),
        }));
    }
    let receipt = collector
        .engine
        .writer()
        .write(
            &destination.tenant,
            tributary_catalog::builtin::EVENTS,
            vec![events],
            IfTableMissing::Fail,
            WriteMode::Append,
        )
        .await
        .map_err(Refusal::from)?;
    Ok(json!({
        "success": true,
        "accepted": receipt.rows,
        "duplicates": receipt.duplicates,
        "conflicts": receipt.conflicts,
        "rejected": rejected,
    }))
}

/// The body as text: gunzipped when the request says so, and within `limit` bytes.
fn decode_body(
    headers: &HeaderMap,
    body: &[u8],
    limit: usize,
    is_batch: bool,
) -> Result<String, Refusal> {
    let what = if is_batch { "batch" } else { "message" };
    let too_large = |size: String| {
        bad_request(format!(
            "the {what} is {size} bytes; the limit is {limit} bytes ({} KB)",
            limit / 1024
        ))
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "gzip" => {
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut decoded)
                .map_err(|e| bad_request(format!("the body is not valid gzip: {e}")))?;
            if decoded.len() > limit {
                return Err(too_large(format!("more than {limit}")));
            }
            decoded
        }
        "identity" | "" => {
            if body.len() > limit {
                return Err(too_large(body.len().to_string()));
            }
            body.to_vec()
        }
        other => {
            return Err(bad_request(format!(
                "unsupported Content-Encoding '{other}' (send gzip or none)"
            )));
        }
    };
    String::from_utf8(bytes).map_err(|_| bad_request("the body is not UTF-8 text"))
}

/// The user name of an `Authorization: Basic` header (Segment's write key).
fn basic_auth_user(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let unreadable = || {
        Refusal(
            StatusCode::UNAUTHORIZED,
            "the Authorization header is not 'Basic base64(writeKey:)'".into(),
        )
    };
    let text = value.to_str().map_err(|_| unreadable())?;
    let Some(encoded) = text
        .strip_prefix("Basic ")
        .or_else(|| text.strip_prefix("basic "))
    else {
        return Err(unreadable());
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| unreadable())?;
    let decoded = String::from_utf8(decoded).map_err(|_| unreadable())?;
    let user = decoded.split(':').next().unwrap_or_default();
    Ok((!user.is_empty()).then(|| user.to_string()))
}
