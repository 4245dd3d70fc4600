//! TLS on the one listener, with certificates the test makes (rcgen): gRPC,
//! REST over HTTP/1.1 and HTTP/2, and gRPC-Web from curl; gRPC from grpcio
//! (Python) and from the CLI (`--ca-cert`, and `smoke` over https); a
//! certificate replaced in place is served without a restart, and files that
//! cannot be used keep the previous ones; client certificates when
//! `tls_client_ca` is set; files that cannot be used stop the start.
//!
//! Needs `curl`, and `python3` with `grpcio` (`.ci/run` installs it; without
//! it the grpcio part is skipped with a note, except under `CI=true`).

use std::{
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::common::{
    ADMIN,
    binary::{BIN, Running, collect_lines, command, free_port, terminate},
    in_ci,
};

/// A CA the test made, able to sign server and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (host names and IP addresses) and its key,
    /// both PEM.
    fn sign(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("client"),
        );
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A directory of PEM files.
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Files {
        Files(tempfile::tempdir().unwrap())
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn path(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }
}

/// The binary serving TLS on a loopback port.
struct TlsServer {
    port: u16,
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn start(env: &[(&str, &str)]) -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![
            ("SWITCHYARD_LISTEN", listen.as_str()),
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
        ];
        all.extend_from_slice(env);
        let mut child = command(dir.path(), &[], &all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = collect_lines(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(15);
        while !stderr.lock().unwrap().iter().any(|l| l.contains("serving")) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "server exited early: {status}\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsServer {
            port,
            child,
            stderr,
            _dir: dir,
        }
    }

    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    fn said(&self, text: &str) -> bool {
        self.stderr.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// curl with `args`, then `url`; the output.
fn curl(args: &[&str], url: &str) -> Output {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .arg(url))
}

/// `GET /admin/feature-flags` with the admin token over curl, trusting `ca`
/// (and sending `client`, a certificate and key); `%{http_version}
/// %{http_code}` when the connection is made.
fn curl_admin(
    server: &TlsServer,
    ca: &str,
    client: Option<(&str, &str)>,
    extra: &[&str],
) -> Output {
    let auth = format!("authorization: Bearer {ADMIN}");
    let mut args = vec![
        "--cacert",
        ca,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        "-H",
        &auth,
    ];
    if let Some((cert, key)) = client {
        args.extend(["--cert", cert, "--key", key]);
    }
    args.extend_from_slice(extra);
    curl(
        &args,
        &format!("{}/admin/feature-flags", server.url("127.0.0.1")),
    )
}

/// `switchyard ARGS` (a client command), with no SWITCHYARD_* settings.
fn cli(args: &[&str]) -> Output {
    let dir = std::env::temp_dir();
    run(&mut command(&dir, args, &[]))
}

/// `switchyard flags export --target URL --token ADMIN ARGS`.
fn export(url: &str, args: &[&str]) -> Output {
    let mut all = vec!["flags", "export", "--target", url, "--token", ADMIN];
    all.extend_from_slice(args);
    cli(&all)
}

/// A Python program calling over grpcio's TLS (`secure_channel`), or
/// `None` when python3 has no grpcio.
fn grpcio(program: &str, args: &[&str]) -> Option<Output> {
    let ready = Command::new("python3")
        .args(["-c", "import grpc"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        assert!(!in_ci(), "CI=true but python3 lacks grpcio");
        eprintln!("note: python3 with grpcio not found; skipping the grpcio part");
        return None;
    }
    Some(run(Command::new("python3")
        .arg("-c")
        .arg(program)
        .args(args)))
}

/// Calls health (public) and ListFlags (with the token) as raw bytes, so no
/// generated code is needed: argv is target, CA file, token and optionally
/// a client certificate and key. Prints the health answer's bytes and
/// ListFlags's status.
const GRPCIO_CALLS: &str = r#"
import sys, grpc
target, ca, token = sys.argv[1:4]
read = lambda p: open(p, "rb").read()
creds = grpc.ssl_channel_credentials(
    root_certificates=read(ca),
    private_key=read(sys.argv[5]) if len(sys.argv) > 5 else None,
    certificate_chain=read(sys.argv[4]) if len(sys.argv) > 5 else None)
with grpc.secure_channel(target, creds) as channel:
    try:
        health = channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10)
        print("health", health.hex())
        flags = channel.unary_unary("/switchyard.v1.FlagService/ListFlags")
        flags(b"", metadata=[("authorization", "Bearer " + token)], timeout=10)
        print("ListFlags OK")
    except grpc.RpcError as e:
        print("failed", e.code().name, e.details())
"#;

/// Waits until `check` holds, at most 10 s (a certificate watched every
/// second).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tls_serves_every_protocol_and_takes_a_new_certificate_without_a_restart() {
    let files = Files::new();
    let ca = Ca::new("switchyard test CA");
    let ca_pem = files.write("ca.pem", &ca.pem());
    let (cert, key) = ca.sign(&["localhost", "127.0.0.1"]);
    let cert_path = files.write("server.pem", &cert);
    let key_path = files.write("server.key", &key);
    let server = TlsServer::start(&[
        ("SWITCHYARD_TLS_CERT", &cert_path),
        ("SWITCHYARD_TLS_KEY", &key_path),
    ]);
    assert!(server.said("tls=true"), "the start says TLS is on");

    // REST from curl, over HTTP/1.1 and over HTTP/2 (agreed by ALPN).
    let out = curl_admin(&server, &ca_pem, None, &["--http1.1"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1.1 200",
        "{}",
        text(&out)
    );
    let out = curl_admin(&server, &ca_pem, None, &["--http2"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        text(&out)
    );
    // A certificate from no CA curl trusts: refused by curl (60).
    let out = curl(
        &[],
        &format!("{}/admin/feature-flags", server.url("127.0.0.1")),
    );
    assert_eq!(out.status.code(), Some(60), "{}", text(&out));
    // Plain HTTP on the TLS listener: told what to do.
    let out = curl(
        &["-i"],
        &format!("http://127.0.0.1:{}/admin/feature-flags", server.port),
    );
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("speaks TLS only: use https://"),
        "{}",
        text(&out)
    );

    // gRPC-Web over HTTP/1.1 and TLS: ListFlags answers in-body trailers.
    let frame = files.write("empty.frame", "\0\0\0\0\0");
    let out = curl(
        &[
            "--cacert",
            &ca_pem,
            "--http1.1",
            "-H",
            "content-type: application/grpc-web+proto",
            "-H",
            &format!("authorization: Bearer {ADMIN}"),
            "--data-binary",
            &format!("@{frame}"),
        ],
        &format!(
            "{}/switchyard.v1.FlagService/ListFlags",
            server.url("localhost")
        ),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("grpc-status:0"),
        "{}",
        text(&out)
    );

    // gRPC from the CLI: with the CA, and without it (refused, with what to do).
    let https = server.url("127.0.0.1");
    let out = export(&https, &["--ca-cert", &ca_pem]);
    assert!(out.status.success(), "{}", text(&out));
    let out = export(&https, &[]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        said.contains("UnknownIssuer") && said.contains("--ca-cert"),
        "{said}"
    );
    // A CA with only a plain address: the address must say https://.
    let out = export(
        &format!("127.0.0.1:{}", server.port),
        &["--ca-cert", &ca_pem],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no address given is https://"),
        "{}",
        text(&out)
    );
    // A plain address to the TLS listener: told that it may speak TLS.
    let out = export(&format!("127.0.0.1:{}", server.port), &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("use https://"),
        "{}",
        text(&out)
    );
    // A CA file that is not PEM: said before any call.
    let out = export(
        &https,
        &["--ca-cert", &cert_path.replace("server.pem", "server.key")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A smoke run over TLS by host name: gRPC calls, the REST listing and a
    // call of the user's own (`--http`, here the server's /metrics); the
    // verdict kept by the same server's GatingService (`--gating https://`).
    let summary = files.path("smoke.json");
    let out = cli(&[
        "smoke",
        "--target",
        &server.url("localhost"),
        "--ca-cert",
        &ca_pem,
        "--token",
        ADMIN,
        "--setup",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--mix",
        "EvaluateFlag=1,AdminFeatureFlags=1,http1=1",
        "--http",
        "GET /metrics",
        "--gating",
        &server.url("127.0.0.1"),
        "--min-requests",
        "20",
        "--out",
        &summary,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(report["verdict"]["status"], "PASS", "{report}");
    assert_eq!(report["results"]["errors"], 0, "{report}");

    // A canary that turned TLS on, against a baseline that has not: one
    // --ca-cert for the https:// side, the plain side as it is.
    let plain = Running::start(&[]);
    let report_path = files.path("canary.json");
    let out = cli(&[
        "canary",
        "--baseline",
        &plain.addr(),
        "--canary",
        &server.url("localhost"),
        "--ca-cert",
        &ca_pem,
        "--token",
        ADMIN,
        "--setup",
        "--rate",
        "50",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--before",
        "0s",
        "--min-requests",
        "20",
        "--out",
        &report_path,
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap_or_default())
            .unwrap_or_else(|_| panic!("no canary report: {}", text(&out)));
    for side in ["control", "experiment"] {
        assert_eq!(report[side]["errors"], 0, "{side}: {report}");
        assert!(
            report[side]["count"].as_i64().unwrap_or(0) >= 40,
            "{side}: {report}"
        );
    }
    drop(plain);

    // grpcio (Python), with the CA as its roots.
    let target = format!("localhost:{}", server.port);
    if let Some(out) = grpcio(GRPCIO_CALLS, &[&target, &ca_pem, ADMIN]) {
        let said = String::from_utf8_lossy(&out.stdout);
        // SERVING is field 1 = 1.
        assert!(
            said.contains("health 0801") && said.contains("ListFlags OK"),
            "{}",
            text(&out)
        );
    }

    // A new certificate from another CA, written over the files in place:
    // served within seconds, with no restart; the old CA no longer works.
    let ca2 = Ca::new("switchyard test CA 2");
    let ca2_pem = files.write("ca2.pem", &ca2.pem());
    let (cert2, key2) = ca2.sign(&["localhost", "127.0.0.1"]);
    // The key first: for a moment the files do not go together, and the
    // previous certificate is kept.
    std::fs::write(&key_path, &key2).unwrap();
    eventually("the unusable pair is said", || {
        server.said("TLS files changed but cannot be used")
    });
    let out = curl_admin(&server, &ca_pem, None, &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "still the old one: {}",
        text(&out)
    );
    std::fs::write(&cert_path, &cert2).unwrap();
    eventually("the new certificate is served", || {
        String::from_utf8_lossy(&curl_admin(&server, &ca2_pem, None, &[]).stdout) == "2 200"
    });
    assert!(server.said("TLS files changed: new connections use them"));
    let out = curl_admin(&server, &ca_pem, None, &[]);
    assert_eq!(out.status.code(), Some(60), "the old CA: {}", text(&out));
    let out = export(&https, &["--ca-cert", &ca2_pem]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn tls_client_ca_asks_every_client_for_a_certificate_it_signed() {
    let files = Files::new();
    let ca = Ca::new("server CA");
    let ca_pem = files.write("ca.pem", &ca.pem());
    let (cert, key) = ca.sign(&["localhost", "127.0.0.1"]);
    let clients = Ca::new("client CA");
    let client_ca = files.write("clients.pem", &clients.pem());
    let (client_cert, client_key) = clients.sign(&["deploy-bot"]);
    let client = (
        files.write("client.pem", &client_cert),
        files.write("client.key", &client_key),
    );
    // Signed by a CA the server does not trust for clients.
    let (other_cert, other_key) = Ca::new("someone else").sign(&["intruder"]);
    let other = (
        files.write("other.pem", &other_cert),
        files.write("other.key", &other_key),
    );
    let server = TlsServer::start(&[
        ("SWITCHYARD_TLS_CERT", &files.write("server.pem", &cert)),
        ("SWITCHYARD_TLS_KEY", &files.write("server.key", &key)),
        ("SWITCHYARD_TLS_CLIENT_CA", &client_ca),
    ]);

    // curl: with the client certificate, without, with another CA's.
    let out = curl_admin(&server, &ca_pem, Some((&client.0, &client.1)), &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        text(&out)
    );
    let out = curl_admin(&server, &ca_pem, None, &[]);
    assert!(
        !out.status.success(),
        "no client certificate: {}",
        text(&out)
    );
    let out = curl_admin(&server, &ca_pem, Some((&other.0, &other.1)), &[]);
    assert!(
        !out.status.success(),
        "another CA's certificate: {}",
        text(&out)
    );

    // The CLI: refused without one (saying so), accepted with one. Without
    // the server's CA, that is what it says, although the server asks for a
    // client certificate too.
    let https = server.url("localhost");
    let out = export(
        &https,
        &["--client-cert", &client.0, "--client-key", &client.1],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--ca-cert") && !said.contains("refused the client certificate"),
        "{said}"
    );
    let out = export(&https, &["--ca-cert", &ca_pem]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--client-cert"),
        "{}",
        text(&out)
    );
    let out = export(
        &https,
        &[
            "--ca-cert",
            &ca_pem,
            "--client-cert",
            &client.0,
            "--client-key",
            &client.1,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = export(
        &https,
        &[
            "--ca-cert",
            &ca_pem,
            "--client-cert",
            &other.0,
            "--client-key",
            &other.1,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the client certificate"),
        "{}",
        text(&out)
    );
    let out = export(&https, &["--ca-cert", &ca_pem, "--client-cert", &client.0]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a certificate without its key: {}",
        text(&out)
    );

    // grpcio: with the client certificate it calls; without, it cannot.
    let target = format!("localhost:{}", server.port);
    if let Some(out) = grpcio(
        GRPCIO_CALLS,
        &[&target, &ca_pem, ADMIN, &client.0, &client.1],
    ) {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("ListFlags OK"),
            "{}",
            text(&out)
        );
    }
    if let Some(out) = grpcio(GRPCIO_CALLS, &[&target, &ca_pem, ADMIN]) {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("failed UNAVAILABLE"),
            "{}",
            text(&out)
        );
    }
}

/// Starts the binary with `env`; its exit code and stderr (it must stop by
/// itself).
fn refused_start(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut all = vec![("SWITCHYARD_LISTEN", listen.as_str())];
    all.extend_from_slice(env);
    let mut child = command(dir.path(), &[], &all)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{BIN} started with unusable TLS settings {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

#[test]
fn tls_files_that_cannot_be_used_stop_the_start_naming_them() {
    let files = Files::new();
    let ca = Ca::new("CA");
    let (cert, key) = ca.sign(&["localhost"]);
    let (_, other_key) = ca.sign(&["localhost"]);
    let cert = files.write("server.pem", &cert);
    let key = files.write("server.key", &key);
    let other_key = files.write("other.key", &other_key);
    let missing = files.path("missing.pem");
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("SWITCHYARD_TLS_CERT", &cert)], "SWITCHYARD_TLS_KEY"),
        (&[("SWITCHYARD_TLS_KEY", &key)], "SWITCHYARD_TLS_CERT"),
        (
            &[("SWITCHYARD_TLS_CLIENT_CA", &cert)],
            "SWITCHYARD_TLS_CLIENT_CA",
        ),
        (
            &[
                ("SWITCHYARD_TLS_CERT", &missing),
                ("SWITCHYARD_TLS_KEY", &key),
            ],
            "missing.pem",
        ),
        (
            &[("SWITCHYARD_TLS_CERT", &key), ("SWITCHYARD_TLS_KEY", &key)],
            "no certificate",
        ),
        (
            &[
                ("SWITCHYARD_TLS_CERT", &cert),
                ("SWITCHYARD_TLS_KEY", &other_key),
            ],
            "does not go with",
        ),
    ];
    for (env, says) in cases {
        let (code, stderr) = refused_start(env);
        assert_ne!(code, Some(0), "{env:?}");
        assert!(
            stderr.contains(says),
            "{env:?} should say {says:?}: {stderr}"
        );
    }
}
