//! The segment builder's HTTP API on the collection port (docs/segments.md#http): a live
//! preview of a definition, stored segments, their refresh and their members.
//!
//! Each call runs the SQL a Flight SQL client would send (`segment_preview`, `CREATE SEGMENT`,
//! `segments`, `segment_members`), with user values as quoted literals, in the tenant named by
//! the `x-tributary-tenant` header (default: the caller's); answers and errors are JSON. These
//! calls read customers and change segments, which a write key must not allow: they take the
//! logins of Flight SQL (`Authorization: Bearer <token>` or `Basic`), with the same roles; while
//! no user exists, only loopback clients are answered.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datafusion::arrow::array::{Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tributary_engine::sql_text::{identifier, string_literal};

use super::{Collector, Refusal, bad_request};
use crate::flight::TENANT_HEADER;

/// Members listed by `GET …/members` when the caller does not say (at most [`LIMIT_MAX`]).
const MEMBERS_DEFAULT: usize = 1000;
/// Customer ids a preview lists when the caller does not say.
const PREVIEW_DEFAULT: usize = 100;
const LIMIT_MAX: usize = 100_000;

/// The routes; while no user exists, refused to clients that are not on loopback.
pub(super) fn routes(collector: Collector) -> Router<Collector> {
    Router::new()
        .route("/v1/segments/preview", post(preview))
        .route("/v1/segments", get(list).post(create))
        .route("/v1/segments/{name}", get(show).delete(remove))
        .route("/v1/segments/{name}/refresh", post(refresh))
        .route("/v1/segments/{name}/members", get(members))
        .route_layer(middleware::from_fn_with_state(collector, loopback_only))
}

async fn loopback_only(
    State(c): State<Collector>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let open = match c.engine.directory().is_open().await {
        Ok(open) => open,
        Err(e) => return Refusal::from(tributary_engine::Error::from(e)).into_response(),
    };
    if !open || client.ip().is_loopback() {
        return next.run(request).await;
    }
    Refusal(
        StatusCode::FORBIDDEN,
        "the segment API answers loopback clients only until users are configured".into(),
    )
    .into_response()
}

type Answer = Result<(StatusCode, axum::Json<Value>), Refusal>;

fn ok(value: Value) -> Answer {
    Ok((StatusCode::OK, axum::Json(value)))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refusal> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| bad_request(format!("the {name} header is not text")))
        })
        .transpose()
}

/// Runs one statement as the caller, in their tenant.
async fn run(c: &Collector, headers: &HeaderMap, sql: &str) -> Result<Vec<RecordBatch>, Refusal> {
    let authorization = header(headers, AUTHORIZATION.as_str())?;
    let access = c
        .engine
        .directory()
        .authenticate(authorization)
        .await
        .map_err(tributary_engine::Error::from)?;
    let ctx = c
        .engine
        .session_as(access, header(headers, TENANT_HEADER)?)?;
    Ok(c.engine.sql_in(&ctx, sql).await?)
}

/// A JSON body that must be an object.
fn object(body: &str, what: &str) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request(format!(
            "the body must be a JSON object ({what})"
        ))),
        Err(e) => Err(bad_request(format!("the body is not JSON: {e}"))),
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

fn limit(asked: Option<usize>, default: usize) -> Result<usize, Refusal> {
    match asked.unwrap_or(default) {
        0 => Err(bad_request("limit must be at least 1")),
        n if n > LIMIT_MAX => Err(bad_request(format!("limit must be at most {LIMIT_MAX}"))),
        n => Ok(n),
    }
}

/// `POST /v1/segments/preview[?limit=N]`, body: a definition → its size and first members.
async fn preview(
    State(c): State<Collector>,
    Query(query): Query<Limit>,
    headers: HeaderMap,
    body: String,
) -> Answer {
    let limit = limit(query.limit, PREVIEW_DEFAULT)?;
    object(&body, "a segment definition")?;
    let sql = format!(
        "SELECT customer_id FROM segment_preview({})",
        string_literal(&body)
    );
    let mut size = 0usize;
    let mut first: Vec<String> = Vec::new();
    for batch in run(&c, &headers, &sql).await? {
        size += batch.num_rows();
        let ids = cast(batch.column(0), &DataType::Utf8).map_err(internal)?;
        let ids = ids
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| internal("customer ids are not text"))?;
        let wanted = limit.saturating_sub(first.len()).min(ids.len());
        first.extend((0..wanted).map(|row| ids.value(row).to_string()));
    }
    ok(json!({"size": size, "customer_ids": first}))
}

/// `POST /v1/segments`, body `{"name", "definition", "schedule"?}` → 201 with who entered.
async fn create(State(c): State<Collector>, headers: HeaderMap, body: String) -> Answer {
    let fields = object(&body, r#"{"name": …, "definition": {…}, "schedule": …}"#)?;
    let name = match fields.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        _ => return Err(bad_request("'name' must be a non-empty string")),
    };
    let definition = match fields.get("definition") {
        Some(definition @ Value::Object(_)) => definition.to_string(),
        _ => {
            return Err(bad_request(
                "'definition' must be a segment definition (an object)",
            ));
        }
    };
    let schedule = match fields.get("schedule") {
        None => "manual".to_string(),
        Some(Value::String(schedule)) => schedule.clone(),
        Some(_) => return Err(bad_request("'schedule' must be a string such as '1 hour'")),
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["name", "definition", "schedule"].contains(&k.as_str()))
    {
        return Err(bad_request(format!(
            "unknown key '{unknown}' (expected name, definition, schedule)"
        )));
    }
    let sql = format!(
        "CREATE SEGMENT {} SCHEDULE {} AS {}",
        identifier(&name),
        string_literal(&schedule),
        string_literal(&definition)
    );
    let entered = count_of(&run(&c, &headers, &sql).await?)?;
    let mut answer = segment(&c, &headers, &name).await?;
    answer.insert("entered".into(), json!(entered));
    Ok((StatusCode::CREATED, axum::Json(Value::Object(answer))))
}

/// `GET /v1/segments` → every stored segment, by name.
async fn list(State(c): State<Collector>, headers: HeaderMap) -> Answer {
    ok(Value::Array(
        segments(&c, &headers, "TRUE")
            .await?
            .into_iter()
            .map(Value::Object)
            .collect(),
    ))
}

/// `GET /v1/segments/{name}` → one stored segment.
async fn show(State(c): State<Collector>, headers: HeaderMap, Path(name): Path<String>) -> Answer {
    ok(Value::Object(segment(&c, &headers, &name).await?))
}

/// `DELETE /v1/segments/{name}`.
async fn remove(
    State(c): State<Collector>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Answer {
    run(&c, &headers, &format!("DROP SEGMENT {}", identifier(&name))).await?;
    ok(json!({"dropped": name}))
}

/// `POST /v1/segments/{name}/refresh` → how many entered or left.
async fn refresh(
    State(c): State<Collector>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Answer {
    let sql = format!("REFRESH SEGMENT {}", identifier(&name));
    let changed = count_of(&run(&c, &headers, &sql).await?)?;
    let mut answer = segment(&c, &headers, &name).await?;
    answer.insert("changed".into(), json!(changed));
    ok(Value::Object(answer))
}

#[derive(Deserialize)]
struct MembersQuery {
    limit: Option<usize>,
    /// Only members whose `customer_id` sorts after this one (the last of the previous page).
    after: Option<String>,
    /// Also the memberships that ended.
    #[serde(default)]
    history: bool,
}

/// `GET /v1/segments/{name}/members[?limit=N&after=ID&history=true]` → members by
/// `customer_id`, with when they entered (and left, with `history`).
async fn members(
    State(c): State<Collector>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Answer {
    let limit = limit(query.limit, MEMBERS_DEFAULT)?;
    segment(&c, &headers, &name).await?;
    let mut conditions = vec![format!("segment = {}", string_literal(&name))];
    if !query.history {
        conditions.push("exited_at IS NULL".into());
    }
    if let Some(after) = &query.after {
        conditions.push(format!("customer_id > {}", string_literal(after)));
    }
    let sql = format!(
        "SELECT customer_id, entered_at, exited_at FROM segment_members WHERE {} \
         ORDER BY customer_id, entered_at LIMIT {limit}",
        conditions.join(" AND ")
    );
    let rows = json_rows(&run(&c, &headers, &sql).await?)?;
    let next = (rows.len() == limit)
        .then(|| rows.last().and_then(|r| r.get("customer_id").cloned()))
        .flatten();
    ok(json!({"segment": name, "members": rows, "next_after": next}))
}

/// One stored segment as JSON, or 404.
async fn segment(
    c: &Collector,
    headers: &HeaderMap,
    name: &str,
) -> Result<Map<String, Value>, Refusal> {
    let condition = format!("name = {}", string_literal(name));
    segments(c, headers, &condition)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            Refusal(
                StatusCode::NOT_FOUND,
                format!("segment '{name}' does not exist"),
            )
        })
}

async fn segments(
    c: &Collector,
    headers: &HeaderMap,
    condition: &str,
) -> Result<Vec<Map<String, Value>>, Refusal> {
    let sql = format!(
        "SELECT name, schedule, size, created_at, refreshed_at, definition, sql FROM segments \
         WHERE {condition} ORDER BY name"
    );
    let mut rows = json_rows(&run(c, headers, &sql).await?)?;
    for row in &mut rows {
        if let Some(Value::String(text)) = row.get("definition")
            && let Ok(definition) = serde_json::from_str::<Value>(text)
        {
            row.insert("definition".into(), definition);
        }
    }
    Ok(rows)
}

/// Rows as JSON objects (NULLs as `null`, times as RFC 3339 text).
fn json_rows(batches: &[RecordBatch]) -> Result<Vec<Map<String, Value>>, Refusal> {
    let mut writer = datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, datafusion::arrow::json::writer::JsonArray>(Vec::new());
    for batch in batches {
        writer.write(batch).map_err(internal)?;
    }
    writer.finish().map_err(internal)?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(internal)
}

fn internal(error: impl ToString) -> Refusal {
    Refusal(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// The `count` a statement answers.
fn count_of(batches: &[RecordBatch]) -> Result<u64, Refusal> {
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|counts| counts.value(0))
        })
        .ok_or_else(|| internal("the statement answered no count"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None, 100).ok(), Some(100));
        assert_eq!(limit(Some(5), 100).ok(), Some(5));
        assert!(limit(Some(0), 100).is_err());
        assert!(limit(Some(LIMIT_MAX + 1), 100).is_err());
    }
}
