//! The `switchyard` binary as an operator runs it.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Duration,
};

use crate::common::*;

#[test]
fn bad_configuration_is_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    /// Arguments, environment, and the setting the error line must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &[],
            &[("SWITCHYARD_LISTEN", "nowhere")],
            "SWITCHYARD_LISTEN",
        ),
        (
            &[],
            &[("SWITCHYARD_DATABASE_URL", "mysql://db")],
            "SWITCHYARD_DATABASE_URL",
        ),
        (&[], &[("SWITCHYARD_TRACK", "purple")], "SWITCHYARD_TRACK"),
        (&["--track", "purple"], &[], "--track"),
        (&["--config", "missing.toml"], &[], "missing.toml"),
        (
            &["serve", "--fault-error-rate", "2"],
            &[],
            "--fault-error-rate",
        ),
        (
            &["serve", "--fault-delay-ms", "60001"],
            &[],
            "--fault-delay-ms",
        ),
        (
            &[],
            &[("SWITCHYARD_FAULT_ERROR_RATE", "-0.1")],
            "SWITCHYARD_FAULT_ERROR_RATE",
        ),
        (&["serve", "--no-such-flag"], &[], "--no-such-flag"),
        (
            &[],
            &[("SWITCHYARD_CONNECTION_IDLE_TIMEOUT_S", "40")],
            "SWITCHYARD_CONNECTION_IDLE_TIMEOUT_S",
        ),
        (
            &[],
            &[("SWITCHYARD_MAX_CONNECTIONS", "0")],
            "SWITCHYARD_MAX_CONNECTIONS",
        ),
        (&["frobnicate"], &[], "frobnicate"),
        // Issue 30: an in-memory database each connection would see empty,
        // a configuration file that never ends, and any web page reading
        // the anonymous flagd tenant's flags.
        (
            &[],
            &[("SWITCHYARD_DATABASE_URL", "sqlite::memory:")],
            "SWITCHYARD_DATABASE_URL",
        ),
        (
            &[],
            &[("SWITCHYARD_DATABASE_URL", "sqlite://db?mode=memory")],
            "SWITCHYARD_DATABASE_URL",
        ),
        (&["serve", "--config", "/dev/zero"], &[], "/dev/zero"),
        (
            &[],
            &[
                ("SWITCHYARD_CORS_ORIGINS", "*"),
                ("SWITCHYARD_FLAGD_ANONYMOUS_TENANT", "acme"),
            ],
            "SWITCHYARD_CORS_ORIGINS",
        ),
        (
            &[],
            &[
                ("SWITCHYARD_MAX_WATCHERS", "10"),
                ("SWITCHYARD_MAX_WATCHERS_PER_CALLER", "11"),
            ],
            "SWITCHYARD_MAX_WATCHERS_PER_CALLER",
        ),
        (
            &[],
            &[("SWITCHYARD_MAX_CONCURRENT_STREAMS", "0")],
            "SWITCHYARD_MAX_CONCURRENT_STREAMS",
        ),
    ];
    for (args, env, setting) in cases {
        let out = command(dir.path(), args, env).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{setting}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(setting), "{stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
}

#[test]
fn serve_with_no_configuration_prints_an_admin_token_once_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = command(dir.path(), &["--listen", &listen], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child);
    assert!(
        dir.path().join("switchyard.db").exists(),
        "the embedded SQLite database is created in the working directory"
    );
    let status = terminate(&mut child);
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    // The token on stdout, apart from the logs: one line.
    let stdout: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert_eq!(stdout.len(), 1, "{stdout:?}");
    assert!(stdout[0].contains("admin token \"admin\""), "{stdout:?}");
    let token = stdout[0].rsplit(' ').next().unwrap();
    assert!(
        token.starts_with("sy_") && token.len() == 67,
        "sy_ and 256 bits in hex: {token}"
    );
}

/// `migrate` against a PostgreSQL database that does not exist creates it
/// when the role may; otherwise it says what to do, as it does for a role
/// that does not exist. Never "unavailable, retry later".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_a_missing_database_or_says_how() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let suffix = &switchyard::app::generate_token()[..12];
    let (base, _) = db.url.rsplit_once('/').unwrap();
    let run = |url: &str| {
        let out = command(
            dir.path(),
            &["migrate"],
            &[("SWITCHYARD_DATABASE_URL", url)],
        )
        .output()
        .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();

    // The superuser may create it: created, then migrated.
    let missing = format!("sytest_new_{suffix}");
    let (code, out, err) = run(&format!("{base}/{missing}"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("created the database"), "{out}");
    assert!(out.contains("migrations applied"), "{out}");

    // A role that does not exist.
    let (scheme, rest) = base.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (code, _, err) = run(&format!("{scheme}://nobody_{suffix}@{host}/{missing}"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the role \"nobody_{suffix}\" does not exist on the server: create it"
        )),
        "{err}"
    );
    assert!(!err.contains("retry later"), "{err}");

    // A role that may not create databases, and a database that does not
    // exist: what to run instead.
    let role = format!("sytest_role_{suffix}");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN")))
        .execute(&admin)
        .await
        .unwrap();
    let absent = format!("sytest_absent_{suffix}");
    let (code, _, err) = run(&format!("{scheme}://{role}@{host}/{absent}"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the database \"{absent}\" does not exist on the server: create it (`createdb {absent}`"
        )),
        "{err}"
    );
    assert!(err.contains("this role may not create databases"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    for stmt in [
        format!("DROP DATABASE IF EXISTS {missing}"),
        format!("DROP ROLE IF EXISTS {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&admin)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serves_after_migrate() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("SWITCHYARD_DATABASE_URL", db.url.as_str()),
        ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
        ("SWITCHYARD_LISTEN", listen.as_str()),
    ];

    // Before migrating, serve refuses in one line.
    let out = command(dir.path(), &["serve"], &env).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("switchyard migrate"), "{stderr}");

    let out = command(dir.path(), &["migrate"], &env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Migrating twice is harmless.
    let out = command(dir.path(), &["migrate"], &env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = command(dir.path(), &["serve"], &env)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child);
    let client = switchyard::client::Client::connect(&listen, "")
        .await
        .unwrap();
    let resp = client
        .health()
        .check(switchyard::api::health::HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(
        resp.get_ref().status(),
        switchyard::api::health::health_check_response::ServingStatus::Serving
    );
    assert!(
        !dir.path().join("switchyard.db").exists(),
        "no SQLite file on PostgreSQL"
    );
    assert!(terminate(&mut child).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_change_is_logged_with_its_revision_and_health_follows_it() {
    use switchyard::api::health::{HealthCheckRequest, health_check_response::ServingStatus};
    use switchyard::store::Store;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = command(
        dir.path(),
        &[],
        &[
            ("SWITCHYARD_LISTEN", listen.as_str()),
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN),
            ("SWITCHYARD_SYNC_INTERVAL_MS", "50"),
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = collect_lines(child.stderr.take().unwrap());
    wait_for_port(port, &mut child);
    let client = switchyard::client::Client::connect(&listen, "")
        .await
        .unwrap();
    let health = || {
        let mut h = client.health();
        async move {
            h.check(HealthCheckRequest::default())
                .await
                .unwrap()
                .into_inner()
                .status()
        }
    };
    assert_eq!(health().await, ServingStatus::Serving);

    // Another replica, of a newer release, commits a flag change this one
    // cannot read.
    let url = format!("sqlite://{}", dir.path().join("switchyard.db").display());
    let store = Store::connect(&url).await.unwrap();
    let mut w = store.begin_write().await.unwrap();
    let revision = w.revision;
    sqlx::query(
        "INSERT INTO change_log (revision, entity, op, flag_key, payload, committed_at_us) \
         VALUES ($1, 'flag', 'delete', 'x', '{\"v\":7,\"kind\":\"flag_delete\"}', $2)",
    )
    .bind(revision)
    .bind(w.now_us)
    .execute(&mut *w.tx)
    .await
    .unwrap();
    w.tx.commit().await.unwrap();

    let logged = |needle: String| {
        let stderr = stderr.clone();
        move || {
            let found = stderr.lock().unwrap().iter().any(|l| l.contains(&needle));
            std::future::ready(found)
        }
    };
    wait_until(
        Duration::from_secs(10),
        logged(format!("revision={revision}")),
    )
    .await;
    let line = stderr
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains(&format!("revision={revision}")))
        .cloned()
        .unwrap();
    assert!(
        line.contains("ERROR") && line.contains("cannot decode"),
        "{line}"
    );
    assert!(
        line.contains("newer release"),
        "the reason is logged: {line}"
    );
    wait_until(Duration::from_secs(10), || async {
        health().await == ServingStatus::NotServing
    })
    .await;

    // Readable again: the replica goes on and says so.
    sqlx::query("UPDATE change_log SET payload = '{\"kind\":\"flag_delete\"}' WHERE revision = $1")
        .bind(revision)
        .execute(store.pool())
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        logged("following the change log again".into()),
    )
    .await;
    wait_until(Duration::from_secs(10), || async {
        health().await == ServingStatus::Serving
    })
    .await;
    store.close().await;
    assert!(terminate(&mut child).success());
}

/// A client command's help lists no server option and marks what it
/// requires; a server option given to it is refused in one line, as is an
/// empty bearer token, with its own message.
#[test]
fn client_commands_take_no_server_options_and_say_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| command(dir.path(), args, &[]).output().unwrap();
    for cmd in ["smoke", "canary", "judge", "token", "flags"] {
        let help = String::from_utf8_lossy(&run(&[cmd, "--help"]).stdout).into_owned();
        for server_only in [
            "--listen",
            "--database-url",
            "--redis-url",
            "--track",
            "--log ",
        ] {
            assert!(
                !help.contains(server_only),
                "{cmd} --help lists {server_only}:\n{help}"
            );
        }
        assert!(
            !help.contains("[default: ]"),
            "{cmd}: an empty default shown:\n{help}"
        );
    }
    let help = String::from_utf8_lossy(&run(&["smoke", "--help"]).stdout).into_owned();
    assert!(
        help.contains("Usage: switchyard smoke [OPTIONS] --target <ADDR>"),
        "{help}"
    );
    let help = String::from_utf8_lossy(&run(&["migrate", "--help"]).stdout).into_owned();
    assert!(
        help.contains("--database-url") && !help.contains("--listen"),
        "{help}"
    );

    let out = run(&[
        "--listen",
        "127.0.0.1:1",
        "smoke",
        "--target",
        "127.0.0.1:1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("are the server's options"), "{err}");
    let out = run(&["smoke"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("required arguments were not provided: --target <ADDR>"),
        "{err}"
    );

    let server = Running::start(&[]);
    let (status, _, body) =
        server.request("GET", "/v1/flags", None, &["authorization: Bearer "], "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("the bearer token is empty"), "{body}");
}
