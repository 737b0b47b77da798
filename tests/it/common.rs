//! Test harness: runs real `strata` processes on loopback ports with their
//! own data directories, and speaks remote-write and the query API to them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value as Json;
use strata_proto::prometheus::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};

/// A free TCP port on 127.0.0.1 for a server of a test, below the
/// kernel's ephemeral range (32768-60999 by default): a port the kernel
/// hands out for port 0 can meanwhile become the source port of one of the
/// many client connections the tests open, and the server then fails to
/// bind it. Each port is handed out once per test binary, starting at an
/// offset taken from the process id so consecutive runs spread out.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// Wall-clock ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A running strata process.
pub struct Strata {
    pub port: u16,
    pub dir: PathBuf,
    pub extra_args: Vec<String>,
    /// Environment of the next (re)start, e.g. `STRATA_CRASH_AT`.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    pub client: reqwest::Client,
}

impl Strata {
    /// Starts strata with data under `dir` and waits until it is ready.
    pub async fn start(dir: &Path, extra_args: &[&str]) -> Strata {
        let mut s = Strata::prepare(dir, extra_args);
        s.spawn().await;
        s
    }

    /// A process to be started with [`Strata::launch`], on a free port.
    pub fn prepare(dir: &Path, extra_args: &[&str]) -> Strata {
        Strata {
            port: free_port(),
            dir: dir.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            child: None,
            client: reqwest::Client::new(),
        }
    }

    async fn spawn(&mut self) {
        self.launch();
        self.wait_ready().await;
    }

    /// Starts the process without waiting for it to be ready.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("strata.log"))
            .expect("open strata log");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            // Paths strata defaults under ./data (the ring) stay per test.
            .current_dir(&self.dir)
            .arg("-server.http-listen-address=127.0.0.1")
            .arg(format!("-server.http-listen-port={}", self.port))
            .arg(format!(
                "-blocks-storage.tsdb.dir={}",
                self.dir.join("tsdb").display()
            ))
            .arg(format!(
                "-blocks-storage.filesystem.dir={}",
                self.dir.join("blocks").display()
            ))
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn strata");
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client.get(self.url("/ready")).send().await
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "strata exited during start-up ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "strata not ready in 60s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("strata.log")).unwrap_or_default()
    }

    /// A URL on this instance.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `within` for the process to exit by itself.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().expect("wait for strata")
    }

    /// Starts the process again on the same port and data.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// Sends a remote-write body; returns status and response text.
    pub async fn push_raw(&self, body: Vec<u8>, tenant: Option<&str>) -> (u16, String) {
        let mut req = self
            .client
            .post(self.url("/api/v1/push"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let r = req.send().await.expect("push request");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// Pushes series; returns status and response text.
    pub async fn push(&self, series: Vec<TimeSeries>, tenant: Option<&str>) -> (u16, String) {
        self.push_raw(encode(series), tenant).await
    }

    /// GET an API path with query parameters; returns status and JSON.
    pub async fn get_json(
        &self,
        path: &str,
        params: &[(&str, String)],
        tenant: Option<&str>,
    ) -> (u16, Json) {
        let mut req = self.client.get(self.url(path)).query(params);
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let r = req.send().await.expect("query request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Json::String(text));
        (status, json)
    }

    /// Instant query; panics unless it succeeds.
    pub async fn query(&self, q: &str, t_ms: i64) -> Json {
        let (status, j) = self
            .get_json(
                "/api/v1/query",
                &[("query", q.to_string()), ("time", secs(t_ms))],
                None,
            )
            .await;
        assert_eq!(status, 200, "query {q}: {j}");
        j["data"].clone()
    }

    /// Raw samples of `selector` in `(end - range, end]` as (labels json, [(ts_ms, value)]).
    pub async fn raw_samples(
        &self,
        selector: &str,
        range: &str,
        end_ms: i64,
    ) -> Vec<(Json, Vec<(i64, f64)>)> {
        let d = self.query(&format!("{selector}[{range}]"), end_ms).await;
        let mut out: Vec<(Json, Vec<(i64, f64)>)> = d["result"]
            .as_array()
            .expect("matrix result")
            .iter()
            .map(|s| {
                let pts = s["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(|p| {
                        let t = (p[0].as_f64().expect("ts") * 1000.0).round() as i64;
                        let v: f64 = p[1].as_str().expect("value string").parse().expect("float");
                        (t, v)
                    })
                    .collect();
                (s["metric"].clone(), pts)
            })
            .collect();
        out.sort_by_key(|a| a.0.to_string());
        out
    }

    /// Reads one metric's value from `/metrics` (sum over label sets).
    pub async fn self_metric(&self, name: &str) -> f64 {
        Self::metric_at(&self.client, &self.url("/metrics"), name).await
    }

    /// Reads one metric's value (sum over label sets) from the `/metrics` at `url`.
    pub async fn metric_at(client: &reqwest::Client, url: &str, name: &str) -> f64 {
        let text = client
            .get(url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Strata {
    /// Starts strata with multi-tenancy on and `overrides` (runtime-config
    /// YAML) in `dir/runtime.yaml`, its runtime configuration file.
    pub async fn start_with_overrides(dir: &Path, overrides: &str, extra_args: &[&str]) -> Strata {
        let runtime = dir.join("runtime.yaml");
        std::fs::write(&runtime, overrides).expect("write runtime config");
        let flag = format!("-runtime-config.file={}", runtime.display());
        let mut args = vec!["-auth.multitenancy-enabled=true", flag.as_str()];
        args.extend_from_slice(extra_args);
        Strata::start(dir, &args).await
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// ms to the API's seconds string.
pub fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Builds a series from label pairs (kept in the given order) and samples.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| Sample {
                timestamp: t,
                value: v,
            })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

/// Snappy-compressed protobuf remote-write body.
pub fn encode(series: Vec<TimeSeries>) -> Vec<u8> {
    encode_with_metadata(series, vec![])
}

/// Snappy-compressed protobuf remote-write body with metric metadata.
pub fn encode_with_metadata(series: Vec<TimeSeries>, metadata: Vec<MetricMetadata>) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: series,
        metadata,
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compress")
}

/// Waits until `GET url` answers 2xx; panics after `secs` with `why()` (a
/// log, say) in the message.
pub async fn wait_ready(url: &str, secs: u64, why: impl Fn() -> String) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} not ready: {}", why());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
