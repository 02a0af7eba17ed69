//! `ingest-load`: the HTTP load of the ingest benchmark. Sends prepared `/v1/batch` bodies from
//! several concurrent keep-alive clients, as SDKs would, and prints one JSON line with the
//! events per second and the request latencies. A 503 is retried after its Retry-After, as
//! SDKs do, and counted. Bodies come from a file of lines `<events>\t<json body>` written by
//! benchmarks/peers/ingest.py, so that the load generator spends nothing on JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Sends Segment batches to a Tributary HTTP collection API and reports the throughput.
#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the collection API, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// File of `<events>\t<json body>` lines.
    #[arg(long)]
    bodies: std::path::PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.bodies)?;
    let bodies: Vec<(u64, Bytes)> = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(n, body)| Ok((n.parse()?, Bytes::from(body.to_string()))))
        .collect::<Result<_, std::num::ParseIntError>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(args.url, bodies, args.clients))?;
    println!("{report}");
    Ok(())
}

async fn run(
    url: String,
    bodies: Vec<(u64, Bytes)>,
    clients: usize,
) -> Result<String, Box<dyn std::error::Error>> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let uri: hyper::Uri = format!("{url}/v1/batch").parse()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, bodies, next, retried, uri) = (
            client.clone(),
            Arc::clone(&bodies),
            Arc::clone(&next),
            Arc::clone(&retried),
            uri.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut events = 0u64;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some((count, body)) = bodies.get(index) else {
                    return Ok::<_, String>((events, latencies));
                };
                loop {
                    let sent = Instant::now();
                    let request = hyper::Request::post(uri.clone())
                        .header("content-type", "application/json")
                        .header("authorization", "Basic YmVuY2g6")
                        .body(Full::new(body.clone()))
                        .map_err(|e| e.to_string())?;
                    let response = client.request(request).await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    let answer = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    if status.as_u16() == 503 {
                        retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    if !status.is_success() {
                        return Err(format!("{status}: {}", String::from_utf8_lossy(&answer)));
                    }
                    latencies.push(sent.elapsed());
                    events += count;
                    break;
                }
            }
        }));
    }
    let mut events = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let (n, mut l) = task.await??;
        events += n;
        latencies.append(&mut l);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(format!(
        r#"{{"events": {events}, "requests": {}, "seconds": {seconds:.3}, "events_per_second": {:.0}, "request_p50_ms": {:.2}, "request_p99_ms": {:.2}, "retried_503": {}}}"#,
        latencies.len(),
        events as f64 / seconds,
        percentile(0.5),
        percentile(0.99),
        retried.load(Ordering::Relaxed)
    ))
}
