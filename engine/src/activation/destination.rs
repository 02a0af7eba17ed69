//! A destination's JSON (`CREATE DESTINATION name AS '<json>'`), read strictly: an unknown key,
//! a missing one or a value of the wrong kind is refused with its name.
//!
//! ```json
//! {"type": "webhook", "url": "https://hooks.example.com/audiences", "batch_size": 500,
//!  "headers": {"Authorization": "Bearer …"}, "format": "plain" | "segment",
//!  "timeout_seconds": 10, "consent": "sms_opt_in"}
//! {"type": "file", "uri": "/exports/audiences" | "s3://bucket/prefix/", "format": "parquet" | "csv",
//!  "consent": "email_opt_in"}
//! ```

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Where and how a segment's changes are delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// The sink.
    pub sink: Sink,
    /// A trait that must be `true` in a member's profile for the member to be delivered.
    pub consent: Option<String>,
}

/// The kinds of destination.
#[derive(Debug, Clone, PartialEq)]
pub enum Sink {
    /// HTTP POSTs of JSON.
    Webhook {
        /// `http://` or `https://`.
        url: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
        /// Members per request (entered and exited together).
        batch_size: usize,
        /// The body's shape.
        format: MessageFormat,
        /// How long one attempt may take.
        timeout: Duration,
    },
    /// One file per delivery, under a directory or object-store prefix.
    File {
        /// A local directory, `file://` or `s3://` URI.
        uri: String,
        /// The files' format.
        format: FileFormat,
    },
}

/// The body of a webhook request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// `{"segment", "destination", "batch_id", "entered": [...], "exited": [...]}`.
    Plain,
    /// A Segment `batch` of `track` ("Audience Entered"/"Audience Exited") and `identify`
    /// messages, which any Segment-compatible receiver takes.
    Segment,
}

/// The format of exported files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// CSV with a header row.
    Csv,
}

const BATCH_SIZE_DEFAULT: usize = 500;
const BATCH_SIZE_MAX: usize = 10_000;
const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

impl Destination {
    /// Reads a destination's JSON text.
    pub fn parse(text: &str) -> Result<Self> {
        let refuse = |message: String| Error::InvalidInput(format!("destination: {message}"));
        let fields: Map<String, Value> = match serde_json::from_str(text) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err(refuse("the configuration must be a JSON object".into())),
            Err(e) => return Err(refuse(format!("the configuration is not JSON: {e}"))),
        };
        let text_of = |key: &str| -> Result<Option<String>> {
            match fields.get(key) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(refuse(format!("'{key}' must be a non-empty string"))),
            }
        };
        let kind = text_of("type")?.ok_or_else(|| refuse("'type' is missing".into()))?;
        let allowed: &[&str] = match kind.as_str() {
            "webhook" => &[
                "type",
                "url",
                "headers",
                "batch_size",
                "format",
                "timeout_seconds",
                "consent",
            ],
            "file" => &["type", "uri", "format", "consent"],
            other => {
                return Err(refuse(format!(
                    "unknown type '{other}' (expected webhook or file)"
                )));
            }
        };
        if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(refuse(format!(
                "unknown key '{unknown}' for a {kind} (expected {})",
                allowed.join(", ")
            )));
        }
        let consent = text_of("consent")?;
        let format = text_of("format")?;
        let sink = if kind == "webhook" {
            let url = text_of("url")?.ok_or_else(|| refuse("'url' is missing".into()))?;
            let parsed = url::Url::parse(&url)
                .map_err(|e| refuse(format!("'url' {url} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(refuse(format!("'url' {url} must be http:// or https://")));
            }
            let headers = match fields.get("headers") {
                None => Vec::new(),
                Some(Value::Object(headers)) => headers
                    .iter()
                    .map(|(name, value)| match value {
                        Value::String(v) => Ok((name.clone(), v.clone())),
                        _ => Err(refuse(format!("header '{name}' must be a string"))),
                    })
                    .collect::<Result<_>>()?,
                Some(_) => return Err(refuse("'headers' must be an object".into())),
            };
            let count = |key: &str, default: u64, max: u64| -> Result<u64> {
                match fields.get(key) {
                    None => Ok(default),
                    Some(value) => {
                        value
                            .as_u64()
                            .filter(|n| (1..=max).contains(n))
                            .ok_or_else(|| {
                                refuse(format!("'{key}' must be a whole number from 1 to {max}"))
                            })
                    }
                }
            };
            Sink::Webhook {
                url,
                headers,
                batch_size: count(
                    "batch_size",
                    BATCH_SIZE_DEFAULT as u64,
                    BATCH_SIZE_MAX as u64,
                )? as usize,
                format: match format.as_deref() {
                    None | Some("plain") => MessageFormat::Plain,
                    Some("segment") => MessageFormat::Segment,
                    Some(other) => {
                        return Err(refuse(format!(
                            "unknown webhook format '{other}' (expected plain or segment)"
                        )));
                    }
                },
                timeout: Duration::from_secs(count(
                    "timeout_seconds",
                    TIMEOUT_DEFAULT.as_secs(),
                    300,
                )?),
            }
        } else {
            Sink::File {
                uri: text_of("uri")?.ok_or_else(|| refuse("'uri' is missing".into()))?,
                format: match format.as_deref() {
                    None | Some("parquet") => FileFormat::Parquet,
                    Some("csv") => FileFormat::Csv,
                    Some(other) => {
                        return Err(refuse(format!(
                            "unknown file format '{other}' (expected parquet or csv)"
                        )));
                    }
                },
            }
        };
        Ok(Self { sink, consent })
    }

    /// `webhook` or `file`.
    pub fn kind(&self) -> &'static str {
        match self.sink {
            Sink::Webhook { .. } => "webhook",
            Sink::File { .. } => "file",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_and_files_are_read_with_defaults() {
        let hook = Destination::parse(
            r#"{"type": "webhook", "url": "http://127.0.0.1:9/x", "headers": {"X-A": "1"},
                "consent": "sms_opt_in"}"#,
        )
        .unwrap();
        assert_eq!(hook.consent.as_deref(), Some("sms_opt_in"));
        assert_eq!(
            hook.sink,
            Sink::Webhook {
                url: "http://127.0.0.1:9/x".into(),
                headers: vec![("X-A".into(), "1".into())],
                batch_size: 500,
                format: MessageFormat::Plain,
                timeout: Duration::from_secs(10),
            }
        );
        let file = Destination::parse(r#"{"type": "file", "uri": "/tmp/x", "format": "csv"}"#);
        assert_eq!(file.unwrap().kind(), "file");
    }

    #[test]
    fn problems_are_named() {
        for (text, named) in [
            ("[]", "JSON object"),
            ("{", "not JSON"),
            (r#"{"url": "http://x"}"#, "'type' is missing"),
            (r#"{"type": "ftp"}"#, "unknown type 'ftp'"),
            (r#"{"type": "webhook"}"#, "'url' is missing"),
            (
                r#"{"type": "webhook", "url": "ftp://x"}"#,
                "http:// or https://",
            ),
            (
                r#"{"type": "webhook", "url": "http://x", "batch_size": 0}"#,
                "'batch_size'",
            ),
            (
                r#"{"type": "webhook", "url": "http://x", "format": "xml"}"#,
                "'xml'",
            ),
            (
                r#"{"type": "webhook", "url": "http://x", "uri": "/x"}"#,
                "unknown key 'uri'",
            ),
            (
                r#"{"type": "file", "uri": "/x", "format": "xlsx"}"#,
                "'xlsx'",
            ),
            (r#"{"type": "file", "uri": 3}"#, "'uri' must be"),
        ] {
            let error = Destination::parse(text).unwrap_err().to_string();
            assert!(error.contains(named), "{text}: {error}");
        }
    }
}
