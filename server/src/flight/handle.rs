//! Tickets and prepared-statement handles carry everything needed to run them — the SQL, its
//! bound parameters, or the outcome of a write that already ran — so any server process can
//! answer them and nothing is kept between calls (JDBC prepares every statement; a load balancer
//! may send its `DoGet` elsewhere).
//!
//! Layout: magic `TRB1`, a kind byte, then the kind's fields.
//! - Query: `u32` SQL length (little endian), SQL (UTF-8), then the parameters as an Arrow IPC
//!   stream (absent if none are bound).
//! - Written: `u64` row count of a write that has run.
//! - Run: a `u128` query id (little endian), then a whole Query handle: the ticket of one
//!   `GetFlightInfo`, so that `CancelFlightInfo` names that run and no other.

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use tonic::Status;

const MAGIC: &[u8; 4] = b"TRB1";
const KIND_QUERY: u8 = 1;
const KIND_WRITTEN: u8 = 2;
const KIND_RUN: u8 = 3;

/// What a ticket or handle stands for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Handle {
    /// A statement to plan and run, with parameters bound to it.
    Query {
        sql: String,
        parameters: Option<RecordBatch>,
    },
    /// A write that already ran, and how many rows it changed.
    Written { count: u64 },
    /// One run of a query, under an id that cancelling names.
    Run { id: u128, query: Box<Handle> },
}

/// A fresh id for one run of a query.
pub(crate) fn new_query_id() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

impl Handle {
    pub(crate) fn query(sql: impl Into<String>) -> Self {
        Self::Query {
            sql: sql.into(),
            parameters: None,
        }
    }

    pub(crate) fn encode(&self) -> Result<Bytes, Status> {
        let mut out = MAGIC.to_vec();
        match self {
            Self::Query { sql, parameters } => {
                out.push(KIND_QUERY);
                let length = u32::try_from(sql.len())
                    .map_err(|_| Status::invalid_argument("SQL text longer than 4 GiB"))?;
                out.extend_from_slice(&length.to_le_bytes());
                out.extend_from_slice(sql.as_bytes());
                if let Some(batch) = parameters {
                    let mut writer = StreamWriter::try_new(&mut out, &batch.schema())
                        .map_err(|e| Status::internal(e.to_string()))?;
                    writer
                        .write(batch)
                        .and_then(|()| writer.finish())
                        .map_err(|e| Status::internal(e.to_string()))?;
                }
            }
            Self::Written { count } => {
                out.push(KIND_WRITTEN);
                out.extend_from_slice(&count.to_le_bytes());
            }
            Self::Run { id, query } => {
                out.push(KIND_RUN);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&query.encode()?);
            }
        }
        Ok(out.into())
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, Status> {
        let invalid = || Status::invalid_argument("not a Tributary statement handle or ticket");
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(invalid)?;
        let (&kind, rest) = rest.split_first().ok_or_else(invalid)?;
        match kind {
            KIND_QUERY => {
                let (length, rest) = rest.split_at_checked(4).ok_or_else(invalid)?;
                let length = u32::from_le_bytes(length.try_into().map_err(|_| invalid())?) as usize;
                let (sql, params) = rest.split_at_checked(length).ok_or_else(invalid)?;
                let sql = std::str::from_utf8(sql).map_err(|_| invalid())?.to_string();
                let parameters = if params.is_empty() {
                    None
                } else {
                    let mut reader = StreamReader::try_new(params, None).map_err(|_| invalid())?;
                    reader.next().transpose().map_err(|_| invalid())?
                };
                Ok(Self::Query { sql, parameters })
            }
            KIND_WRITTEN => {
                let count = rest.try_into().map_err(|_| invalid())?;
                Ok(Self::Written {
                    count: u64::from_le_bytes(count),
                })
            }
            KIND_RUN => {
                let (id, query) = rest.split_at_checked(16).ok_or_else(invalid)?;
                let id = u128::from_le_bytes(id.try_into().map_err(|_| invalid())?);
                // Only a query runs: never decode nested runs (no recursion on crafted input).
                if query.get(MAGIC.len()) != Some(&KIND_QUERY) {
                    return Err(invalid());
                }
                match Self::decode(query)? {
                    query @ Self::Query { .. } => Ok(Self::Run {
                        id,
                        query: Box::new(query),
                    }),
                    _ => Err(invalid()),
                }
            }
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn round_trips() {
        let params = RecordBatch::try_from_iter(vec![
            ("$1", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
            ("$2", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ])
        .unwrap();
        for handle in [
            Handle::query("SELECT 1"),
            Handle::Query {
                sql: "SELECT $1, $2".into(),
                parameters: Some(params),
            },
            Handle::Written { count: 42 },
            Handle::Run {
                id: u128::MAX - 7,
                query: Box::new(Handle::query("SELECT 2")),
            },
        ] {
            assert_eq!(Handle::decode(&handle.encode().unwrap()).unwrap(), handle);
        }
    }

    #[test]
    fn garbage_is_refused() {
        for bytes in [
            &b""[..],
            b"TRB1",
            b"TRB1\x01\xff\xff\xff\xff",
            b"XXXX\x01",
            b"TRB1\x09",
            b"TRB1\x03\x01",
            b"TRB1\x03AAAAAAAAAAAAAAAATRB1\x02\x00\x00\x00\x00\x00\x00\x00\x00",
        ] {
            assert_eq!(
                Handle::decode(bytes).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}
