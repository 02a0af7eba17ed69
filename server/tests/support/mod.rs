//! The real `tributary serve` binary for the end-to-end tests of this package: started on free
//! loopback ports with a data directory, killed when dropped.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arrow_flight::sql::client::FlightSqlServiceClient;
use tonic::transport::Channel;

/// A running server.
pub(crate) struct Server {
    child: Child,
    /// Its Flight SQL address, `host:port`.
    pub(crate) address: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts a server on `data` with extra `serve` flags; its stderr is kept for
    /// [`Server::stderr`].
    pub(crate) fn start(data: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
            .args([
                "serve",
                "--flight-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .arg("--data")
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tributary serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let kept = std::sync::Arc::clone(&stderr);
        // Drained as it comes (a full pipe would block the server), kept for `stderr()`.
        let stderr_reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&chunk[..n]);
                eprint!("{text}");
                kept.lock().unwrap().push_str(&text);
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads stdout to the end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("Tributary Flight SQL listening on ") {
                    let address = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(address.to_string());
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed its address within 60 s");
        Self {
            child,
            address,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// A Flight SQL client of this server.
    pub(crate) async fn client(&self) -> FlightSqlServiceClient<Channel> {
        FlightSqlServiceClient::new(self.channel().await)
    }

    /// A gRPC channel to this server.
    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .expect("connect to server")
    }

    /// The server's peak resident memory so far (KiB).
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Stops the server with SIGTERM and waits for it.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Kills the server and returns everything it wrote to stderr.
    pub(crate) fn stderr(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
