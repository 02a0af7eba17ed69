//! `DoPut` uploads (bulk ingest and path puts): the batches are decoded and handed to the write
//! path as they arrive ([`Writer::write_stream`]), so a large upload is never held whole, and an
//! upload that breaks off writes nothing.

use std::sync::{Arc, Mutex};

use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;
use tributary_engine::{IfTableMissing, WriteMode, WriteReceipt, Writer};

use crate::error::status_of;
use crate::flight::statements::upload_status;

/// An ingest option (`CommandStatementIngest.options`) a client sets to the number of rows it
/// sends: an upload that ends with fewer (the client stopped on a read error, or went away) is
/// refused whole instead of committed in part. `tributary import` sets it.
pub const EXPECTED_ROWS: &str = "tributary.expected_rows";

/// Decoded batches waiting for the write path at most.
const DECODED_AHEAD: usize = 4;

/// Where an upload is going.
pub(crate) struct UploadTarget<'a> {
    pub tenant: &'a str,
    pub table: &'a str,
    pub if_missing: IfTableMissing,
    pub mode: WriteMode,
    /// The row count the client promised ([`EXPECTED_ROWS`]), if it did.
    pub expected_rows: Option<&'a String>,
}

/// Writes the batches of a `DoPut` stream as they arrive. A broken stream (a decode error, the
/// client gone, or fewer rows than promised) writes nothing and is answered with its own
/// status.
pub(crate) async fn write_upload(
    writer: &Arc<Writer>,
    target: UploadTarget<'_>,
    stream: impl Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<WriteReceipt, Status> {
    let expected = target
        .expected_rows
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                Status::invalid_argument(format!("{EXPECTED_ROWS} is a row count, not '{text}'"))
            })
        })
        .transpose()?;
    let failure = Arc::new(Mutex::new(None));
    let upload = Upload {
        decoded: FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from)),
        received: 0,
        expected,
        failure: Arc::clone(&failure),
        ended: false,
    };
    // Decoding runs in a task of its own, so the next batches are decoded while the write path
    // admits the last ones; a write that fails early drops the receiver, which ends the task.
    let (sender, mut receiver) = tokio::sync::mpsc::channel(DECODED_AHEAD);
    tokio::spawn(async move {
        let mut decoded = std::pin::pin!(futures::stream::unfold(upload, Upload::next_batch));
        while let Some(item) = decoded.next().await {
            if sender.send(item).await.is_err() {
                break;
            }
        }
    });
    let batches = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let written = writer
        .write_stream(
            target.tenant,
            target.table,
            batches,
            target.if_missing,
            target.mode,
        )
        .await;
    written.map_err(|e| {
        let stream_failure = failure.lock().expect("upload failure poisoned").take();
        stream_failure.unwrap_or_else(|| status_of(e))
    })
}

/// The state of an upload being read.
struct Upload {
    decoded: FlightRecordBatchStream,
    received: u64,
    expected: Option<u64>,
    /// The status a broken stream is answered with (the write path sees it as an error).
    failure: Arc<Mutex<Option<Status>>>,
    ended: bool,
}

type Item = tributary_engine::Result<arrow::array::RecordBatch>;

impl Upload {
    async fn next_batch(mut self) -> Option<(Item, Self)> {
        if self.ended {
            return None;
        }
        let failed = match self.decoded.next().await {
            Some(Ok(batch)) => {
                self.received += batch.num_rows() as u64;
                return Some((Ok(batch), self));
            }
            Some(Err(error)) => upload_status(error),
            None => match self.expected {
                Some(expected) if expected != self.received => Status::aborted(format!(
                    "the upload ended after {} of {expected} rows, so nothing was written: send \
                     it again",
                    self.received
                )),
                _ => return None,
            },
        };
        self.ended = true;
        let error = tributary_engine::Error::InvalidInput(failed.message().to_string());
        *self.failure.lock().expect("upload failure poisoned") = Some(failed);
        Some((Err(error), self))
    }
}
