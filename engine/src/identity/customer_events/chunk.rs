//! The events of one committed Delta file as `customer_events` keeps them: grouped by event,
//! ordered by time within each event, each event's person as the ordinal of its
//! (`user_id`, `anonymous_id`) pair in [`People`]. Read once per file; the file never changes.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::error::{DataFusionError, Result as DfResult};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The columns of `events` a chunk is made of.
const COLUMNS: [&str; 4] = ["event", "timestamp", "user_id", "anonymous_id"];

/// Every distinct (`user_id`, `anonymous_id`) pair seen, numbered in order of first sight.
#[derive(Debug, Default)]
pub(super) struct People {
    ordinals: HashMap<Arc<[u8]>, u32>,
    keys: Vec<Arc<[u8]>>,
}

impl People {
    /// How many pairs there are.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The pair numbered `ordinal`.
    pub(super) fn pair(&self, ordinal: u32) -> (Option<&str>, Option<&str>) {
        decode(&self.keys[ordinal as usize])
    }

    /// The number of the pair (`key` is scratch space for its encoding).
    pub(super) fn ordinal(
        &mut self,
        user: Option<&str>,
        anonymous: Option<&str>,
        key: &mut Vec<u8>,
    ) -> u32 {
        encode(user, anonymous, key);
        if let Some(&ordinal) = self.ordinals.get(key.as_slice()) {
            return ordinal;
        }
        let ordinal = u32::try_from(self.keys.len()).expect("fewer than 2^32 people");
        let key: Arc<[u8]> = Arc::from(key.as_slice());
        self.keys.push(Arc::clone(&key));
        self.ordinals.insert(key, ordinal);
        ordinal
    }
}

/// A pair as bytes: which of the two are present, the user id's length, then both texts.
fn encode(user: Option<&str>, anonymous: Option<&str>, out: &mut Vec<u8>) {
    out.clear();
    out.push(u8::from(user.is_some()) | (u8::from(anonymous.is_some()) << 1));
    let user = user.unwrap_or("");
    out.extend_from_slice(&(user.len() as u32).to_le_bytes());
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(anonymous.unwrap_or("").as_bytes());
}

fn decode(key: &[u8]) -> (Option<&str>, Option<&str>) {
    let length = u32::from_le_bytes([key[1], key[2], key[3], key[4]]) as usize;
    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).expect("keys are made of text")
    }
    let user = (key[0] & 1 != 0).then(|| text(&key[5..5 + length]));
    let anonymous = (key[0] & 2 != 0).then(|| text(&key[5 + length..]));
    (user, anonymous)
}

/// One event's rows of a chunk.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) event: Option<Arc<str>>,
    pub(super) rows: Range<usize>,
}

/// The events of one file.
#[derive(Debug)]
pub(super) struct Chunk {
    /// In event order (NULL first).
    pub(super) groups: Vec<Group>,
    /// Microseconds since the epoch, ascending within each group.
    pub(super) times: ScalarBuffer<i64>,
    /// Ordinals in [`People`].
    pub(super) people: ScalarBuffer<u32>,
}

impl Chunk {
    /// The rows of `events`' columns (`COLUMNS`, any string type) in `batches`.
    pub(super) fn of(batches: &[RecordBatch], people: &mut People) -> DfResult<Self> {
        let mut names: HashMap<Option<String>, u32> = HashMap::new();
        let mut rows: Vec<(u32, i64, u32)> = Vec::new();
        let mut key = Vec::new();
        for batch in batches {
            let text = |name: &str| texts(batch, name);
            let (events, users, anonymous) =
                (text("event")?, text("user_id")?, text("anonymous_id")?);
            let times = column(batch, "timestamp")?;
            let times = cast(times, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let times = times.as_primitive::<TimestampMicrosecondType>();
            let mut last: Option<(Option<&str>, Option<&str>, u32)> = None;
            let mut last_event: Option<(Option<&str>, u32)> = None;
            for row in 0..batch.num_rows() {
                let (user, anon) = (value(&users, row), value(&anonymous, row));
                // Files are sorted by event and person: neighbours usually share the pair.
                let person = match last {
                    Some((u, a, ordinal)) if u == user && a == anon => ordinal,
                    _ => people.ordinal(user, anon, &mut key),
                };
                last = Some((user, anon, person));
                let event = value(&events, row);
                let code = match last_event {
                    Some((name, code)) if name == event => code,
                    _ => {
                        let next = names.len() as u32;
                        *names.entry(event.map(str::to_string)).or_insert(next)
                    }
                };
                last_event = Some((event, code));
                rows.push((code, times.value(row), person));
            }
        }
        let mut by_code: Vec<(Option<String>, u32)> = names.into_iter().collect();
        by_code.sort();
        let mut rank = vec![0u32; by_code.len()];
        for (position, (_, code)) in by_code.iter().enumerate() {
            rank[*code as usize] = position as u32;
        }
        rows.sort_unstable_by_key(|&(code, time, _)| (rank[code as usize], time));
        let mut groups: Vec<Group> = Vec::with_capacity(by_code.len());
        for (index, &(code, _, _)) in rows.iter().enumerate() {
            let position = rank[code as usize] as usize;
            if position + 1 == groups.len() {
                groups[position].rows.end = index + 1;
            } else {
                groups.push(Group {
                    event: by_code[position].0.as_deref().map(Arc::from),
                    rows: index..index + 1,
                });
            }
        }
        Ok(Chunk {
            groups,
            times: rows.iter().map(|r| r.1).collect(),
            people: rows.iter().map(|r| r.2).collect(),
        })
    }

    /// The row ranges (ascending, disjoint) of `group` whose times fall in one of `ranges`
    /// (inclusive).
    pub(super) fn slices(&self, group: &Group, ranges: &[(i64, i64)]) -> Vec<Range<usize>> {
        let times = &self.times[group.rows.clone()];
        let mut slices: Vec<Range<usize>> = ranges
            .iter()
            .map(|&(from, to)| {
                let start = times.partition_point(|&t| t < from);
                let end = times.partition_point(|&t| t <= to);
                group.rows.start + start..group.rows.start + end.max(start)
            })
            .filter(|slice| !slice.is_empty())
            .collect();
        slices.sort_by_key(|slice| slice.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(slices.len());
        for slice in slices {
            match merged.last_mut() {
                Some(last) if slice.start <= last.end => last.end = last.end.max(slice.end),
                _ => merged.push(slice),
            }
        }
        merged
    }
}

/// The batches of `COLUMNS` of one Parquet file (a column the file lacks is absent): the file
/// is fetched whole, then decoded off the async threads.
pub(super) async fn read_file(
    store: Arc<dyn ObjectStore>,
    path: Path,
) -> DfResult<Vec<RecordBatch>> {
    let bytes = store.get(&path).await?.bytes().await?;
    let decode = move || -> DfResult<Vec<RecordBatch>> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        let mask = ProjectionMask::columns(builder.parquet_schema(), COLUMNS);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(64 * 1024)
            .build()?;
        Ok(reader.collect::<Result<Vec<_>, _>>()?)
    };
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
}

fn value(array: &Option<StringArray>, row: usize) -> Option<&str> {
    array
        .as_ref()
        .filter(|a| a.is_valid(row))
        .map(|a| a.value(row))
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> DfResult<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| DataFusionError::Execution(format!("an events file has no '{name}' column")))
}

/// A text column as `Utf8`; `None` when the file does not have it (all NULL).
fn texts(batch: &RecordBatch, name: &str) -> DfResult<Option<StringArray>> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(array) => Ok(Some(
            cast(array, &DataType::Utf8)?.as_string::<i32>().clone(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn pairs_survive_encoding_with_any_text() {
        let mut people = People::default();
        let mut key = Vec::new();
        let pairs = [
            (Some("u\u{0}1"), None),
            (None, Some("a1")),
            (Some(""), Some("")),
            (None, None),
            (Some("用户"), Some("ä")),
        ];
        let ordinals: Vec<u32> = pairs
            .iter()
            .map(|(u, a)| people.ordinal(*u, *a, &mut key))
            .collect();
        assert_eq!(ordinals, vec![0, 1, 2, 3, 4]);
        for (ordinal, pair) in pairs.iter().enumerate() {
            assert_eq!(people.pair(ordinal as u32), *pair);
            assert_eq!(people.ordinal(pair.0, pair.1, &mut key), ordinal as u32);
        }
    }

    #[test]
    fn a_chunk_groups_by_event_and_orders_by_time() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event", DataType::Utf8, true),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("anonymous_id", DataType::Utf8, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![
                Some("b"),
                None,
                Some("a"),
                Some("b"),
                Some("a"),
            ])),
            Arc::new(TimestampMicrosecondArray::from(vec![5, 1, 9, 2, 3])),
            Arc::new(StringArray::from(vec!["x", "y", "x", "x", "z"])),
        ];
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        let mut people = People::default();
        let chunk = Chunk::of(&[batch], &mut people).unwrap();
        let events: Vec<Option<&str>> = chunk.groups.iter().map(|g| g.event.as_deref()).collect();
        assert_eq!(events, vec![None, Some("a"), Some("b")]);
        assert_eq!(chunk.times.to_vec(), vec![1, 3, 9, 2, 5]);
        assert_eq!(people.len(), 3);
        assert_eq!(people.pair(chunk.people[1]), (None, Some("z")));
        let b = &chunk.groups[2];
        assert_eq!(chunk.slices(b, &[(0, 2), (2, 4), (6, 7)]), vec![3..4]);
        assert_eq!(chunk.slices(b, &[(0, 10)]), vec![3..5]);
        assert!(chunk.slices(b, &[(6, 7)]).is_empty());
    }
}
