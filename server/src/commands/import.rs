//! `tributary import FILE --table T`: loads a CSV, Parquet or NDJSON file into a table over
//! Flight SQL bulk ingest.
//!
//! The whole file is read and checked first — against the table's columns if the table exists,
//! otherwise against a schema inferred from the file — and sent in one `DoPut` that the server
//! commits once: a bad row is reported with its line number and nothing is written.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::commands::client::{Client, ConnectArgs};
use tributary_engine::write::conform::column_list;

use crate::error::{Error, Result};

/// Rows per batch read from a file.
const BATCH_ROWS: usize = 8192;

/// Rows per batch sent when streaming a Parquet file (a Flight message each, well under the
/// server's 16 MiB message limit for the generator's events).
const STREAM_BATCH_ROWS: usize = 32_768;
/// Rows read to infer a CSV or NDJSON schema.
const INFER_ROWS_MAX: usize = 10_000;

/// File formats `tributary import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Newline-delimited JSON, one object per line.
    Ndjson,
}

/// Options of `tributary import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// File to load (.csv, .parquet, .ndjson / .jsonl / .json).
    pub file: PathBuf,

    /// Table to load into; created from the file's schema if it does not exist.
    #[arg(long)]
    pub table: String,

    /// File format (default: from the file extension).
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,

    /// Where the server is.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `tributary import`.
pub async fn run(args: ImportArgs) -> Result<()> {
    let format = match args.format {
        Some(format) => format,
        None => format_of(&args.file)?,
    };
    let mut client = Client::connect(&args.connect).await?;
    let written = if format == FileFormat::Parquet {
        // Streamed: read, sent and committed at the end without holding the file.
        let (batches, rows) = stream_parquet(&args.file)?;
        client.ingest_stream(&args.table, batches, rows).await?
    } else {
        let table_schema = existing_table_schema(&mut client, &args.table).await?;
        let path = args.file.clone();
        let batches = tokio::task::spawn_blocking(move || read_file(&path, format, table_schema))
            .await
            .map_err(|e| Error::BadInput(format!("reader failed: {e}")))??;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let spinner = ProgressBar::new_spinner().with_message(format!("committing {rows} rows"));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let written = client.ingest(&args.table, batches).await;
        spinner.finish_and_clear();
        written?
    };
    println!(
        "imported {written} rows from {} into {}",
        args.file.display(),
        args.table
    );
    Ok(())
}

/// Batches of a Parquet file read on a blocking thread as they are sent (a few at a time in
/// memory), with a progress bar of the rows sent, and the file's row count. A bad file is
/// refused before anything is sent; an error further on ends the stream with it.
fn stream_parquet(
    path: &Path,
) -> Result<(
    impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static,
    u64,
)> {
    let (reader, rows) = parquet_reader(path, STREAM_BATCH_ROWS)?;
    let bar = progress(rows, "rows sent");
    let name = path.display().to_string();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(4);
    tokio::task::spawn_blocking(move || {
        for batch in reader {
            let batch = batch.map_err(|e| Error::BadInput(format!("{name}: {e}")));
            if let Ok(batch) = &batch {
                bar.inc(batch.num_rows() as u64);
            }
            let failed = batch.is_err();
            if sender.blocking_send(batch).is_err() || failed {
                break;
            }
        }
        bar.finish_and_clear();
    });
    let batches = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    Ok((batches, rows))
}

fn format_of(path: &Path) -> Result<FileFormat> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("csv") => Ok(FileFormat::Csv),
        Some("parquet" | "pq") => Ok(FileFormat::Parquet),
        Some("ndjson" | "jsonl" | "json") => Ok(FileFormat::Ndjson),
        _ => Err(Error::BadInput(format!(
            "{}: cannot tell the format from the extension; pass --format csv|parquet|ndjson",
            path.display()
        ))),
    }
}

/// The table's schema if it exists (column names and types to read the file with).
async fn existing_table_schema(client: &mut Client, table: &str) -> Result<Option<SchemaRef>> {
    tributary_catalog::validate_name("table", table)?;
    match client
        .flight_info(&format!("SELECT * FROM \"{table}\" LIMIT 0"))
        .await
    {
        Ok(info) => Ok(Some(Arc::new(info.try_decode_schema()?))),
        Err(Error::Server(status)) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn progress(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!("{{spinner}} reading [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|source| Error::File {
        path: path.display().to_string(),
        source,
    })
}

/// Reads a whole file into batches, checked against `table_schema` when given.
pub fn read_file(
    path: &Path,
    format: FileFormat,
    table_schema: Option<SchemaRef>,
) -> Result<Vec<RecordBatch>> {
    let bad = |msg: String| Error::BadInput(format!("{}: {msg}", path.display()));
    match format {
        FileFormat::Parquet => parquet_reader(path, BATCH_ROWS)?
            .0
            .map(|batch| batch.map_err(|e| bad(e.to_string())))
            .collect(),
        FileFormat::Csv => read_csv(path, table_schema),
        FileFormat::Ndjson => read_ndjson(path, table_schema),
    }
}

/// A reader of the Parquet file at `path` in batches of `batch_rows`, and its row count.
fn parquet_reader(path: &Path, batch_rows: usize) -> Result<(ParquetRecordBatchReader, u64)> {
    let bad = |e: &dyn std::fmt::Display| Error::BadInput(format!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(open(path)?)
        .map_err(|e| bad(&format!("not a readable Parquet file: {e}")))?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    let reader = builder
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| bad(&e))?;
    Ok((reader, rows))
}

fn read_csv(path: &Path, table_schema: Option<SchemaRef>) -> Result<Vec<RecordBatch>> {
    use arrow::csv::ReaderBuilder;
    use arrow::csv::reader::Format;
    let bad = |msg: String| Error::BadInput(format!("{}: {msg}", path.display()));
    let mut file = open(path)?;
    let format = Format::default().with_header(true);
    let (inferred, _) = format
        .infer_schema(&mut file, Some(INFER_ROWS_MAX))
        .map_err(|e| bad(e.to_string()))?;
    file.rewind()?;
    // Columns are read in the file's order, typed as the table's columns of the same name.
    let schema = match &table_schema {
        Some(table) => Arc::new(Schema::new(
            inferred
                .fields()
                .iter()
                .map(|f| match table.field_with_name(f.name()) {
                    Ok(column) => Ok(Field::new(f.name(), column.data_type().clone(), true)),
                    Err(_) => Err(bad(format!(
                        "column '{}' is not in the table (its columns: {})",
                        f.name(),
                        column_list(table)
                    ))),
                })
                .collect::<Result<Vec<_>>>()?,
        )),
        None => Arc::new(inferred),
    };
    let bar = progress(file.metadata()?.len(), "bytes");
    let reader = ReaderBuilder::new(schema)
        .with_format(format)
        .with_batch_size(BATCH_ROWS)
        .build(bar.wrap_read(file))
        .map_err(|e| bad(e.to_string()))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(file_line_numbers(&e.to_string())));
    bar.finish_and_clear();
    batches
}

/// arrow-csv counts data records from 1 after the header; people count the file's lines.
fn file_line_numbers(message: &str) -> String {
    const MARKER: &str = "at line ";
    let Some(start) = message.find(MARKER).map(|i| i + MARKER.len()) else {
        return message.to_string();
    };
    let digits: String = message[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match digits.parse::<u64>() {
        Ok(record) => format!(
            "{}{}{}",
            &message[..start],
            record + 1,
            &message[start + digits.len()..]
        ),
        Err(_) => message.to_string(),
    }
}

fn read_ndjson(path: &Path, table_schema: Option<SchemaRef>) -> Result<Vec<RecordBatch>> {
    let bad = |line: usize, msg: String| {
        Error::BadInput(format!("{}: line {line}: {msg}", path.display()))
    };
    let schema = match table_schema {
        Some(schema) => schema,
        None => {
            let mut reader = BufReader::new(open(path)?);
            let (schema, _) =
                arrow::json::reader::infer_json_schema(&mut reader, Some(INFER_ROWS_MAX))
                    .map_err(|e| Error::BadInput(format!("{}: {e}", path.display())))?;
            Arc::new(schema)
        }
    };
    let file = open(path)?;
    let bar = progress(file.metadata()?.len(), "bytes");
    let mut rows: Vec<(usize, serde_json::Value)> = Vec::with_capacity(BATCH_ROWS);
    let mut batches = Vec::new();
    for (index, line) in BufReader::new(bar.wrap_read(file)).lines().enumerate() {
        let number = index + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(number, format!("not valid JSON: {e}")))?;
        let Some(object) = value.as_object_mut() else {
            return Err(bad(number, "expected a JSON object".into()));
        };
        if let Some(unknown) = object.keys().find(|k| schema.field_with_name(k).is_err()) {
            return Err(bad(
                number,
                format!(
                    "field '{unknown}' is not a column (columns: {})",
                    column_list(&schema)
                ),
            ));
        }
        text_for_json_columns(&schema, object);
        rows.push((number, value));
        if rows.len() == BATCH_ROWS {
            batches.push(decode_rows(&schema, &rows, &bad)?);
            rows.clear();
        }
    }
    if !rows.is_empty() {
        batches.push(decode_rows(&schema, &rows, &bad)?);
    }
    bar.finish_and_clear();
    Ok(batches)
}

/// Nested objects bound for a text column (like `properties`) are stored as their JSON text.
fn text_for_json_columns(schema: &Schema, object: &mut serde_json::Map<String, serde_json::Value>) {
    for (key, value) in object.iter_mut() {
        let is_text = schema.field_with_name(key).is_ok_and(|f| {
            matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        });
        if is_text && (value.is_object() || value.is_array()) {
            *value = serde_json::Value::String(value.to_string());
        }
    }
}

fn decode_rows(
    schema: &SchemaRef,
    rows: &[(usize, serde_json::Value)],
    bad: &impl Fn(usize, String) -> Error,
) -> Result<RecordBatch> {
    let decode = |chunk: &[(usize, serde_json::Value)]| -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
        let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(schema))
            .with_batch_size(chunk.len().max(1))
            .build_decoder()?;
        let values: Vec<&serde_json::Value> = chunk.iter().map(|(_, v)| v).collect();
        decoder.serialize(&values)?;
        Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
    };
    decode(rows).map_err(|chunk_error| {
        // Report the first line at fault, not just the chunk.
        rows.iter()
            .find_map(|row| {
                decode(std::slice::from_ref(row))
                    .err()
                    .map(|e| bad(row.0, e.to_string()))
            })
            .unwrap_or_else(|| bad(rows[0].0, chunk_error.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }

    fn table() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("properties", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn csv_bad_value_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.csv", "id,name\n1,ann\n2,bob\nthree,cy\n");
        let err = read_file(&path, FileFormat::Csv, Some(table())).unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
    }

    #[test]
    fn csv_unknown_column_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.csv", "id,nmae\n1,ann\n");
        let err = read_file(&path, FileFormat::Csv, Some(table())).unwrap_err();
        assert!(
            err.to_string()
                .contains("column 'nmae' is not in the table"),
            "{err}"
        );
    }

    #[test]
    fn ndjson_reports_line_of_bad_json_and_bad_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "a.ndjson", "{\"id\": 1}\n{\"id\": 2\n");
        let err = read_file(&path, FileFormat::Ndjson, Some(table())).unwrap_err();
        assert!(err.to_string().contains("line 2: not valid JSON"), "{err}");
        let path = write(&dir, "b.ndjson", "{\"id\": 1}\n\n{\"id\": \"x\"}\n");
        let err = read_file(&path, FileFormat::Ndjson, Some(table())).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn ndjson_nested_object_becomes_json_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "a.ndjson",
            "{\"id\": 1, \"properties\": {\"a\": [1, 2]}}\n",
        );
        let batches = read_file(&path, FileFormat::Ndjson, Some(table())).unwrap();
        let column = batches[0].column(2);
        let text = arrow::util::display::array_value_to_string(column, 0).unwrap();
        assert_eq!(text, r#"{"a":[1,2]}"#);
    }
}
