//! The in-process half of the identity benchmark (`benchmarks/run.sh identity`): resolves the
//! generator's `identities.parquet` with the `tributary-identity` crate in batch, then measures
//! incremental updates of one edge (new devices, merges, refusals, unbinds that split), checks
//! that the incremental result equals a batch recomputation, and writes the identity map for
//! the accuracy check. Prints one JSON object.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tributary_identity::{Action, EdgeRecord, IdentityGraph, Rules};

/// One edge record, owned.
#[derive(Debug, Clone)]
struct Edge {
    from: (String, String),
    to: (String, String),
    at: i64,
    action: Action,
    source: String,
}

impl Edge {
    fn record(&self) -> EdgeRecord<'_> {
        EdgeRecord {
            from: (&self.from.0, &self.from.1),
            to: (&self.to.0, &self.to.1),
            observed_at: self.at,
            action: self.action,
            source: &self.source,
        }
    }
}

fn text(batch: &RecordBatch, name: &str) -> StringArray {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    cast(column, &DataType::Utf8)
        .expect("text")
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8")
        .clone()
}

fn read_edges(path: &PathBuf) -> Vec<Edge> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut edges = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let [id_type, id_value, linked_type, linked_value, source, action] = [
            "id_type",
            "id_value",
            "linked_type",
            "linked_value",
            "source",
            "action",
        ]
        .map(|c| text(&batch, c));
        let at = cast(
            batch.column_by_name("observed_at").expect("observed_at"),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .expect("time");
        let at = at
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("micros");
        for row in 0..batch.num_rows() {
            edges.push(Edge {
                from: (id_type.value(row).into(), id_value.value(row).into()),
                to: (
                    linked_type.value(row).into(),
                    linked_value.value(row).into(),
                ),
                at: at.value(row),
                action: action.value(row).parse().expect("action"),
                source: if source.is_valid(row) {
                    source.value(row).into()
                } else {
                    String::new()
                },
            });
        }
    }
    edges
}

fn batch_resolve(edges: &[Edge]) -> IdentityGraph {
    IdentityGraph::build(Rules::default(), edges.iter().map(Edge::record), [])
}

fn map_of(graph: &IdentityGraph) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = graph
        .customers()
        .flat_map(|(c, members, _)| {
            let c = c.to_string();
            members
                .into_iter()
                .map(move |(t, v)| (t.to_string(), v.to_string(), c.clone()))
        })
        .collect();
    rows.sort();
    rows
}

fn write_map(path: &PathBuf, rows: &[(String, String, String)]) {
    let schema = Arc::new(Schema::new(
        ["id_type", "id_value", "customer_id"]
            .map(|n| Field::new(n, DataType::Utf8, false))
            .to_vec(),
    ));
    let mut builders: [StringBuilder; 3] = Default::default();
    for (t, v, c) in rows {
        builders[0].append_value(t);
        builders[1].append_value(v);
        builders[2].append_value(c);
    }
    let columns: Vec<ArrayRef> = builders
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).expect("map batch");
    let mut writer =
        ArrowWriter::try_new(File::create(path).expect("map file"), schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(map_out)) = (args.next(), args.next()) else {
        eprintln!("usage: identity-bench IDENTITIES.parquet MAP_OUT.parquet [PROBES]");
        std::process::exit(2);
    };
    let probes: usize = args
        .next()
        .map_or(20_000, |p| p.parse().expect("PROBES is a number"));
    let edges = read_edges(&PathBuf::from(input));

    let mut runs = Vec::new();
    let mut graph = batch_resolve(&edges);
    for _ in 0..3 {
        drop(graph); // freeing the previous graph is not part of a resolution
        let started = Instant::now();
        graph = batch_resolve(&edges);
        runs.push(started.elapsed().as_secs_f64());
    }
    let customers = graph.customer_count();
    runs.sort_by(f64::total_cmp);
    write_map(&PathBuf::from(map_out), &map_of(&graph));

    // Incremental updates after the last edge: new devices of existing users, links between
    // two existing customers (merges or refusals), and unbinds of existing pairs (splits).
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let last = edges.iter().map(|e| e.at).max().unwrap_or(0);
    let users: Vec<&Edge> = edges
        .iter()
        .filter(|e| e.action == Action::Bind && e.to.0 == "user_id")
        .collect();
    let mut applied = edges.clone();
    let mut timings: [Vec<f64>; 3] = Default::default();
    for probe in 0..probes {
        let at = last + 1 + probe as i64;
        let kind = probe % 3;
        let base = users[rng.random_range(0..users.len())];
        let edge = match kind {
            0 => Edge {
                from: ("anonymous_id".into(), format!("probe-device-{probe}")),
                to: base.to.clone(),
                at,
                action: Action::Bind,
                source: "probe".into(),
            },
            1 => {
                let other = users[rng.random_range(0..users.len())];
                Edge {
                    from: ("anonymous_id".into(), other.from.1.clone()),
                    to: base.to.clone(),
                    at,
                    action: Action::Bind,
                    source: "probe".into(),
                }
            }
            _ => Edge {
                action: Action::Unbind,
                at,
                source: "probe".into(),
                ..base.clone()
            },
        };
        let started = Instant::now();
        let changes = graph.apply(edge.record());
        timings[kind].push(started.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(changes);
        applied.push(edge);
    }
    let same = map_of(&graph) == map_of(&batch_resolve(&applied));
    let summary = |name: &str, t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        format!(
            "\"{name}\": {{\"count\": {}, \"mean_us\": {:.3}, \"p50_us\": {:.3}, \"p99_us\": {:.3}, \"max_us\": {:.3}}}",
            t.len(),
            t.iter().sum::<f64>() / t.len().max(1) as f64,
            percentile(t, 0.5),
            percentile(t, 0.99),
            t.last().copied().unwrap_or(0.0)
        )
    };
    let [new_device, link, unbind] = &mut timings;
    println!(
        "{{\"edges\": {}, \"identifiers\": {}, \"customers\": {}, \"batch_seconds\": {:.4}, \"batch_runs\": {:?}, {}, {}, {}, \"incremental_equals_batch\": {same}}}",
        edges.len(),
        graph.identifier_count(),
        customers,
        runs[0],
        runs,
        summary("new_device", new_device),
        summary("link_two_customers", link),
        summary("unbind", unbind),
    );
}
