//! A real Prometheus (Debian's `prometheus`) on loopback with the repo's rule
//! files, for the suites that check rules, dashboards and budget reads; and
//! `promtool` backfills of known series.

use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value as Json;

use super::{free_port, in_ci};

/// Whether `prometheus` and `promtool` are here; under CI their absence fails.
pub fn available() -> bool {
    let found = Command::new("prometheus").arg("--version").output().is_ok()
        && Command::new("promtool").arg("--version").output().is_ok();
    if !found {
        assert!(
            !in_ci(),
            "CI=true but prometheus and promtool are not installed"
        );
        eprintln!("note: prometheus not found; skipping (CI installs the Debian package)");
    }
    found
}

/// Writes `lines` (OpenMetrics samples `name{labels} value timestamp_s`,
/// with their `# TYPE` lines) into a new TSDB in `dir` with `promtool tsdb
/// create-blocks-from openmetrics`.
pub fn backfill(dir: &Path, lines: &[String]) {
    let input = dir.join("backfill.om");
    let mut text = lines.join("\n");
    text.push_str("\n# EOF\n");
    std::fs::write(&input, text).unwrap();
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool backfill: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Prometheus {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second and evaluating the
    /// repo's rules every second, over the TSDB in `data` (made by
    /// [`backfill`]) or a fresh one; `None` when there is no binary (outside
    /// CI).
    pub fn start(targets: &[String], data: Option<&Path>) -> Option<Prometheus> {
        if !available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = data.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("observability/prometheus");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: [{}]\n",
            rules.join("rules.yml").display(),
            rules.join("alerts.yml").display(),
            targets
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Some(Prometheus {
            child,
            port,
            _dir: dir,
        })
    }

    /// `GET /api/v1/<path>?<query>`: the JSON answer (`status`, `data`, ...).
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Json {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return Json::Null; // not listening yet
        };
        write!(
            s,
            "GET /api/v1/{path}?{query} HTTP/1.0\r\nhost: prometheus\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or(Json::Null)
    }

    /// Evaluates `expr` now: (labels, value) of each series.
    pub fn query(&self, expr: &str) -> Vec<(serde_json::Map<String, Json>, f64)> {
        let r = self.api("query", &[("query", expr)]);
        r["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let value = s["value"][1]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(f64::NAN);
                        (s["metric"].as_object().cloned().unwrap_or_default(), value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of the series of `expr` with `track`.
    pub fn on_track(&self, expr: &str, track: &str) -> Option<f64> {
        self.query(expr)
            .into_iter()
            .find(|(l, _)| l.get("track").and_then(Json::as_str) == Some(track))
            .map(|(_, v)| v)
    }

    /// Waits (at most `secs`) until `expr` answers a series; returns its value.
    pub async fn wait_for(&self, expr: &str, secs: u64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some((_, v)) = self.query(expr).first() {
                return *v;
            }
            assert!(Instant::now() < deadline, "{expr} answered within {secs} s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it (the port then refuses connections).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Backfills an hour of the availability SLO's request and error rates (the
/// inputs of the repo's budget rules: what the SLO counts, on the stable
/// track) at `requests`/s and `errors`/s, one sample a minute.
pub fn backfill_rates(dir: &std::path::Path, requests: f64, errors: f64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut lines = Vec::new();
    for (name, value) in [
        ("slo:switchyard_requests:rate5m", requests),
        ("slo:switchyard_request_errors:rate5m", errors),
    ] {
        lines.push(format!("# TYPE {name} gauge"));
        for m in (2..=60).rev() {
            lines.push(format!(
                "{name}{{slo=\"availability\"}} {value} {:.3}",
                now - f64::from(m) * 60.0
            ));
        }
    }
    backfill(dir, &lines);
}
