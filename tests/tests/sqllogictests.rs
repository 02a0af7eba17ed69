//! Runs every `tests/sql/**/*.slt` file against a fresh Tributary engine on a temporary local
//! directory (real Delta tables on a real file system), through the same planning and execution
//! path as Flight SQL.
//!
//! Set `TRIBUTARY_SLT_FILTER=substring` to run only matching files.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tributary_catalog::{S3Options, Storage};
use tributary_engine::{Engine, is_write};

struct TributaryDb {
    engine: Engine,
    _dir: tempfile::TempDir,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SltError(String);

#[async_trait::async_trait]
impl AsyncDB for TributaryDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let fail = |e: tributary_engine::Error| SltError(e.to_string());
        let ctx = self.engine.session("default").map_err(fail)?;
        let plan = self.engine.plan(&ctx, sql).await.map_err(fail)?;
        if is_write(&plan) {
            let count = self.engine.execute_write(&ctx, plan).await.map_err(fail)?;
            return Ok(DBOutput::StatementComplete(count));
        }
        let stream = self.engine.execute(&ctx, plan).await.map_err(fail)?;
        let batches = datafusion::physical_plan::common::collect(stream)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        let columns = batches.first().map_or(0, RecordBatch::num_columns);
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows: format_rows(&batches).map_err(|e| SltError(e.to_string()))?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tributary"
    }
}

/// Cells as sqllogictest expects them: `NULL` for nulls, `(empty)` for empty strings.
fn format_rows(batches: &[RecordBatch]) -> datafusion::error::Result<Vec<Vec<String>>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| match f.value(row).to_string() {
                        s if s.is_empty() => "(empty)".to_string(),
                        s => s,
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/sql exists")
        .map(|e| e.expect("readable entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logic_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    let filter = std::env::var("TRIBUTARY_SLT_FILTER").unwrap_or_default();
    files.retain(|f| f.to_string_lossy().contains(&filter));
    assert!(!files.is_empty(), "no .slt files under {}", root.display());

    let mut failures = Vec::new();
    for file in &files {
        let mut runner = sqllogictest::Runner::new(|| async {
            let dir = tempfile::tempdir().map_err(|e| SltError(e.to_string()))?;
            let storage = Storage::parse(dir.path().to_str().unwrap(), &S3Options::default())
                .map_err(|e| SltError(e.to_string()))?;
            let engine = Engine::open(storage)
                .await
                .map_err(|e| SltError(e.to_string()))?;
            Ok(TributaryDb { engine, _dir: dir })
        });
        match runner.run_file_async(file).await {
            Ok(()) => println!("ok   {}", file.display()),
            Err(e) => {
                println!("FAIL {}\n{e}", file.display());
                failures.push(format!("{}: {e}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} .slt file(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
