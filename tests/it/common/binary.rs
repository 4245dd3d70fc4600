//! The real `switchyard` binary as an operator runs it: a clean
//! `SWITCHYARD_*` / `OTEL_*` environment plus what the test sets, its stderr
//! collected line by line, stopped with SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Returns a free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the binary in `dir` with a clean `SWITCHYARD_*` and `OTEL_*`
/// environment plus `env`.
pub fn command(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHYARD_") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Waits until the server on `port` answers a health check (whatever it
/// says: a listening socket alone does not mean `serve` got past start-up);
/// panics if the child exits first.
pub fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while health(port).is_none() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "server did not answer a health check"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The overall health the server on `port` reports, or `None` when nothing
/// answers. Runs on a thread of its own, so it may be called from anywhere,
/// async tests included.
pub fn health(port: u16) -> Option<switchyard::api::health::health_check_response::ServingStatus> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let c = switchyard::client::Client::connect(&format!("127.0.0.1:{port}"), "")
                .await
                .ok()?;
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                c.health()
                    .check(switchyard::api::health::HealthCheckRequest::default()),
            )
            .await
            .ok()?
            .ok()?;
            Some(answer.into_inner().status())
        })
    })
    .join()
    .ok()
    .flatten()
}

/// Sends SIGTERM and waits (at most 15 s) for the exit status.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects a stream's lines as they come.
pub fn collect_lines(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// A running binary on a loopback port, over a SQLite file in its own
/// directory, with the test admin token; stopped when dropped.
pub struct Running {
    pub port: u16,
    pub child: Child,
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// What it printed on stdout (the admin token a first start makes).
    pub stdout: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Running {
    /// Starts the binary with `env` (on top of listen address and admin
    /// token) and waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Running {
        Running::start_with(&[], env)
    }

    /// Starts the binary with `args` and `env`, as [`Running::start`].
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec![("SWITCHYARD_ADMIN_TOKEN", super::ADMIN)];
        all.extend_from_slice(env);
        let mut running = Running::start_in(dir.path(), args, &all);
        running._dir = Some(dir);
        running
    }

    /// Starts the binary in `dir` with `args` and `env` (on top of the
    /// listen address) as README does: the replicas started in one
    /// directory share its SQLite file (and so its tokens).
    pub fn start_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![("SWITCHYARD_LISTEN", listen.as_str())];
        all.extend_from_slice(env);
        let mut child = command(dir, args, &all)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = collect_lines(child.stderr.take().unwrap());
        let stdout = collect_lines(child.stdout.take().unwrap());
        wait_for_port(port, &mut child);
        Running {
            port,
            child,
            stderr,
            stdout,
            _dir: None,
        }
    }

    /// The admin token the first start of an empty database printed.
    pub fn printed_token(&self) -> Option<String> {
        self.stdout.lock().unwrap().iter().find_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("sy_"))
                .map(str::to_owned)
        })
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client with `token`.
    pub async fn client(&self, token: &str) -> switchyard::client::Client {
        switchyard::client::Client::connect(&self.addr(), token)
            .await
            .unwrap()
    }

    /// `GET path` over HTTP/1.1 with an optional token: status and body.
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        self.send("GET", path, token, "")
    }

    /// `POST path` with a JSON body; the status and the body.
    pub fn post(&self, path: &str, token: Option<&str>, json: &str) -> (u16, String) {
        self.send("POST", path, token, json)
    }

    fn send(&self, method: &str, path: &str, token: Option<&str>, json: &str) -> (u16, String) {
        let (status, _, body) = self.request(method, path, token, &[], json);
        (status, body)
    }

    /// `method path` with more request headers (`name: value`) and a JSON
    /// body (empty: none); the status, the response head and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[&str],
        json: &str,
    ) -> (u16, String, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let body = if json.is_empty() {
            String::new()
        } else {
            format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                json.len()
            )
        };
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nhost: test\r\n{auth}{extra}{body}connection: close\r\n\r\n{json}"
        )
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (status, head.to_owned(), body.to_owned())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
