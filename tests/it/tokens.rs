//! Named tokens as a team lives with them, through the real binary: the
//! first start of an empty database makes an admin token and shows it once
//! on stdout; it outlives restarts and holds on every replica sharing the
//! database; `switchyard token create|list|revoke` take effect on every
//! replica without a restart; an expired token is refused; a lost admin
//! token is replaced with `token create --direct`.

use std::{
    process::{Child, Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::common::*;
use switchyard::api::v1::{GetSmokeThresholdRequest, ListFlagsRequest};
use tonic::Code;

on_both_backends!(named_tokens_hold_on_every_replica_and_outlive_a_restart);

/// A replica with no token configured, over `db`: its stdout collected.
struct Replica {
    port: u16,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    fn start(dir: &std::path::Path, db: &str) -> Replica {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = command(
            dir,
            &[],
            &[
                ("SWITCHYARD_LISTEN", listen.as_str()),
                ("SWITCHYARD_DATABASE_URL", db),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let stdout = collect_lines(child.stdout.take().unwrap());
        wait_for_port(port, &mut child);
        Replica {
            port,
            child,
            stdout,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stop(mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `switchyard token ...` with `token` as `$SWITCHYARD_TOKEN`.
fn token_cli(dir: &std::path::Path, args: &[&str], token: &str, db: &str) -> Output {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    command(
        dir,
        &all,
        &[("SWITCHYARD_TOKEN", token), ("SWITCHYARD_DATABASE_URL", db)],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The one line a successful `token create` writes on stdout: the secret.
fn secret_of(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", err(o));
    let text = out(o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "the secret alone on stdout: {text:?}");
    assert!(
        lines[0].starts_with("sy_") && lines[0].len() == 67,
        "{text:?}"
    );
    lines[0].to_owned()
}

/// What `token` may do on `addr`: the code of a gating call.
async fn gating_call(addr: &str, token: &str) -> Code {
    let client = switchyard::client::Client::connect(addr, token)
        .await
        .unwrap();
    match client
        .gating()
        .get_smoke_threshold(GetSmokeThresholdRequest::default())
        .await
    {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Waits until a gating call with `token` on `addr` answers `code`.
async fn until_gating(addr: &str, token: &str, code: Code) {
    let (addr, token) = (addr.to_owned(), token.to_owned());
    wait_until(Duration::from_secs(10), move || {
        let (addr, token) = (addr.clone(), token.clone());
        async move { gating_call(&addr, &token).await == code }
    })
    .await;
}

async fn named_tokens_hold_on_every_replica_and_outlive_a_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let migrated = command(
        dir.path(),
        &["migrate"],
        &[("SWITCHYARD_DATABASE_URL", db.url.as_str())],
    )
    .output()
    .unwrap();
    assert!(migrated.status.success(), "{}", err(&migrated));

    // The first start of the empty database: one admin token, on stdout.
    let a = Replica::start(dir.path(), &db.url);
    let shown = a.stdout.clone();
    wait_until(Duration::from_secs(5), move || {
        let shown = shown.clone();
        async move { !shown.lock().unwrap().is_empty() }
    })
    .await;
    let line = a
        .stdout()
        .into_iter()
        .find(|l| l.contains("made the admin token \"admin\""))
        .unwrap_or_else(|| panic!("no admin token shown: {:?}", a.stdout()));
    assert_eq!(a.stdout().len(), 1, "{:?}", a.stdout());
    let admin = line.rsplit(' ').next().unwrap().to_owned();
    assert!(admin.starts_with("sy_"), "{line}");
    // A second replica on the same database makes none, and accepts it.
    let b = Replica::start(dir.path(), &db.url);
    assert!(b.stdout().is_empty(), "{:?}", b.stdout());
    assert_eq!(gating_call(&b.addr(), &admin).await, Code::Ok);

    // A gating token made on A holds on B, for gating calls only.
    let ci = secret_of(&token_cli(
        dir.path(),
        &[
            "create",
            "--target",
            &a.addr(),
            "--name",
            "ci",
            "--scope",
            "gating",
            "--expires",
            "30d",
        ],
        &admin,
        &db.url,
    ));
    until_gating(&b.addr(), &ci, Code::Ok).await;
    let client = switchyard::client::Client::connect(&b.addr(), &ci)
        .await
        .unwrap();
    let refused = client
        .flags()
        .list_flags(ListFlagsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Listed on B, by name, without secrets.
    let list = token_cli(
        dir.path(),
        &["list", "--target", &b.addr()],
        &admin,
        &db.url,
    );
    assert_eq!(list.status.code(), Some(0), "{}", err(&list));
    let rows: Vec<Vec<String>> = out(&list)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows[0][..3], ["NAME", "SCOPE", "CREATED"], "{rows:?}");
    assert_eq!(rows[1][..3], ["admin", "admin", "bootstrap"], "{rows:?}");
    assert_eq!(rows[2][..3], ["ci", "gating", "admin"], "{rows:?}");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(!out(&list).contains(&ci) && !out(&list).contains(&admin));

    // What is refused, with the reason: a name in use, a bad name, a
    // non-admin caller, an unknown name to revoke.
    let dup = token_cli(
        dir.path(),
        &[
            "create",
            "--target",
            &b.addr(),
            "--name",
            "ci",
            "--scope",
            "admin",
        ],
        &admin,
        &db.url,
    );
    assert_eq!(dup.status.code(), Some(1));
    assert!(
        err(&dup).contains("token \"ci\" already exists"),
        "{}",
        err(&dup)
    );
    let bad = token_cli(
        dir.path(),
        &[
            "create",
            "--target",
            &b.addr(),
            "--name",
            "CI bot",
            "--scope",
            "admin",
        ],
        &admin,
        &db.url,
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        err(&bad).contains("name: must be 1 to 63 characters"),
        "{}",
        err(&bad)
    );
    let not_admin = token_cli(
        dir.path(),
        &[
            "create",
            "--target",
            &b.addr(),
            "--name",
            "x",
            "--scope",
            "admin",
        ],
        &ci,
        &db.url,
    );
    assert_eq!(not_admin.status.code(), Some(1));
    assert!(
        err(&not_admin).contains("needs an admin token"),
        "{}",
        err(&not_admin)
    );
    let reserved = token_cli(
        dir.path(),
        &[
            "create",
            "--target",
            &b.addr(),
            "--name",
            "admin_token",
            "--scope",
            "admin",
        ],
        &admin,
        &db.url,
    );
    assert_eq!(reserved.status.code(), Some(1));
    assert!(
        err(&reserved).contains("\"admin_token\" is reserved"),
        "{}",
        err(&reserved)
    );
    let unknown = token_cli(
        dir.path(),
        &["revoke", "nobody", "--target", &b.addr()],
        &admin,
        &db.url,
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        err(&unknown).contains("token \"nobody\""),
        "{}",
        err(&unknown)
    );

    // Revoked on B: A refuses it, without a restart.
    let revoked = token_cli(
        dir.path(),
        &["revoke", "ci", "--target", &b.addr()],
        &admin,
        &db.url,
    );
    assert_eq!(revoked.status.code(), Some(0), "{}", err(&revoked));
    until_gating(&a.addr(), &ci, Code::Unauthenticated).await;

    // A token with a lifetime is refused once it has passed.
    let brief = secret_of(&token_cli(
        dir.path(),
        &[
            "create",
            "--target",
            &a.addr(),
            "--name",
            "brief",
            "--scope",
            "gating",
            "--expires",
            "2s",
        ],
        &admin,
        &db.url,
    ));
    until_gating(&a.addr(), &brief, Code::Ok).await;
    until_gating(&a.addr(), &brief, Code::Unauthenticated).await;

    // A restart on the same database: no new token, the admin one holds.
    a.stop();
    b.stop();
    let a = Replica::start(dir.path(), &db.url);
    assert!(a.stdout().is_empty(), "{:?}", a.stdout());
    assert_eq!(gating_call(&a.addr(), &admin).await, Code::Ok);
    a.stop();

    // The admin token lost: another one written straight into the database,
    // with no server and no token.
    let rescue = secret_of(&token_cli(
        dir.path(),
        &["create", "--direct", "--name", "rescue", "--scope", "admin"],
        "",
        &db.url,
    ));
    let a = Replica::start(dir.path(), &db.url);
    assert_eq!(gating_call(&a.addr(), &rescue).await, Code::Ok);
    let again = token_cli(
        dir.path(),
        &["create", "--direct", "--name", "rescue", "--scope", "admin"],
        "",
        &db.url,
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(err(&again).contains("already exists"), "{}", err(&again));
    // A database that is not there is not made: a mistyped path is refused.
    if backend == Backend::Sqlite {
        let missing = format!("sqlite://{}/nowhere.db", dir.path().display());
        let o = token_cli(
            dir.path(),
            &["create", "--direct", "--name", "x", "--scope", "admin"],
            "",
            &missing,
        );
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(err(&o).contains("no SQLite database at"), "{}", err(&o));
        assert!(!dir.path().join("nowhere.db").exists());
    }
}
