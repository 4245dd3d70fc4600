//! The `switchyard` binary: parses the command line, loads the configuration,
//! and runs one command.

#![forbid(unsafe_code)]

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use switchyard_cli::{
    commands::{self, CanaryArgs, SmokeArgs},
    flags::{self, FlagsCommand},
    judge::{self, JudgeArgs},
    rollout::{self, RolloutCommand},
    token::{self, TokenCommand},
};
use switchyard_core::config::{Config, Overrides};

/// A gRPC control plane: tenant routing, feature flags with a lossless watch,
/// release gating.
#[derive(Parser)]
#[command(name = "switchyard", version)]
struct Cli {
    /// The server's options, for `switchyard` alone (which serves).
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the server's configuration comes from and what it overrides (of
/// `serve`, and of `switchyard` alone).
#[derive(clap::Args, Default, Clone)]
struct ServerArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The gRPC + HTTP listen address, host:port [env: SWITCHYARD_LISTEN;
    /// default 127.0.0.1:50051].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// redis://... ; unset: in-process cache and bus [env: SWITCHYARD_REDIS_URL].
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// stable, baseline or canary [env: SWITCHYARD_TRACK].
    #[arg(long, value_name = "TRACK")]
    track: Option<String>,
}

/// The configuration file, the database and the logs (of `serve` and
/// `migrate`).
#[derive(clap::Args, Default, Clone)]
struct DatabaseArgs {
    /// A TOML configuration file (its keys are the settings' names in lowercase
    /// without the SWITCHYARD_ prefix).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// sqlite://FILE or postgres://... [env: SWITCHYARD_DATABASE_URL; default sqlite://switchyard.db].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// A log filter such as info or switchyard=debug [env: SWITCHYARD_LOG].
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

impl ServerArgs {
    /// `self`, with what `sub` (the subcommand's own) gives instead.
    fn or(self, sub: ServerArgs) -> ServerArgs {
        ServerArgs {
            database: self.database.or(sub.database),
            listen: sub.listen.or(self.listen),
            redis_url: sub.redis_url.or(self.redis_url),
            track: sub.track.or(self.track),
        }
    }

    fn is_empty(&self) -> bool {
        self.database.is_empty()
            && self.listen.is_none()
            && self.redis_url.is_none()
            && self.track.is_none()
    }
}

impl DatabaseArgs {
    fn or(self, sub: DatabaseArgs) -> DatabaseArgs {
        DatabaseArgs {
            config: sub.config.or(self.config),
            database_url: sub.database_url.or(self.database_url),
            log: sub.log.or(self.log),
        }
    }

    fn is_empty(&self) -> bool {
        self.config.is_none() && self.database_url.is_none() && self.log.is_none()
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve(ServeArgs),
    /// Apply database migrations to the configured database (creating a
    /// PostgreSQL database that does not exist, when the role may), then exit.
    Migrate(DatabaseArgs),
    /// Drive synthetic traffic at a server and judge it against the smoke
    /// threshold that applies now; writes smoke-summary.json. Exits 0 PASS,
    /// 1 FAIL, 2 usage error, 3 INCONCLUSIVE or NO_DATA.
    Smoke(SmokeArgs),
    /// Drive the same interleaved traffic at a baseline and a canary and
    /// compare them; writes canary-report.json. Exits as smoke does.
    Canary(CanaryArgs),
    /// Judge another load tool's report (a k6 --summary-export JSON or a ghz
    /// JSON report): one is a smoke run, two (baseline, canary) a canary
    /// comparison. Exits as smoke does.
    Judge(JudgeArgs),
    /// Import or export flags in flagd's flag-definition format (a client of
    /// a running server). Exits 0 done, 1 refused, 2 usage.
    #[command(subcommand)]
    Flags(FlagsCommand),
    /// Create, list or revoke named tokens (a client of a running server;
    /// `create --direct` writes the configured database instead). Exits 0
    /// done, 1 refused, 2 usage.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Start, follow and steer guarded rollouts of a flag's variant (a
    /// client of a running server). Exits 0 done, 1 refused (with --watch:
    /// failed or aborted), 2 usage, 3 with --watch: paused.
    #[command(subcommand)]
    Rollout(RolloutCommand),
}

/// `serve`: the server's options and the drill's.
#[derive(clap::Args, Default)]
struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// DRILL ONLY: delay every switchyard.v1 call by this many ms [env:
    /// SWITCHYARD_FAULT_DELAY_MS; default 0].
    #[arg(long, value_name = "MS")]
    fault_delay_ms: Option<u64>,
    /// DRILL ONLY: refuse this share (0 to 1) of switchyard.v1 calls as
    /// UNAVAILABLE [env: SWITCHYARD_FAULT_ERROR_RATE; default 0].
    #[arg(long, value_name = "RATIO")]
    fault_error_rate: Option<f64>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || matches!(
                    e.kind(),
                    ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                )
            {
                e.exit();
            }
            // One line: what is wrong, without the usage block (a list
            // under it, such as the missing arguments, joined to it).
            let text = e.render().to_string();
            let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
            let mut line = lines
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ")
                .to_owned();
            if line.ends_with(':') {
                let items: Vec<&str> = lines
                    .take_while(|l| l.starts_with(' '))
                    .map(str::trim)
                    .collect();
                line = format!("{line} {}", items.join(", "));
            }
            eprintln!("switchyard: {line} (see switchyard --help)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The client commands read no server configuration, and take none.
    let client = matches!(
        &cli.command,
        Some(
            Command::Smoke(_)
                | Command::Canary(_)
                | Command::Judge(_)
                | Command::Flags(_)
                | Command::Token(_)
                | Command::Rollout(_)
        )
    );
    if client && !cli.server.is_empty() {
        eprintln!(
            "switchyard: --config, --listen, --database-url, --redis-url, --track and --log are the server's options (switchyard serve); a client command takes none (token create --direct takes --config and --database-url after create; see switchyard --help)"
        );
        return ExitCode::from(2);
    }
    match cli.command {
        Some(Command::Smoke(args)) => {
            return ExitCode::from(runtime.block_on(commands::smoke(args, &client_env())));
        }
        Some(Command::Canary(args)) => {
            return ExitCode::from(runtime.block_on(commands::canary(args, &client_env())));
        }
        Some(Command::Judge(args)) => {
            return ExitCode::from(runtime.block_on(judge::judge(args, &client_env())));
        }
        Some(Command::Flags(cmd)) => {
            return ExitCode::from(runtime.block_on(flags::flags(cmd, &client_env())));
        }
        Some(Command::Rollout(cmd)) => {
            return ExitCode::from(runtime.block_on(rollout::rollout(cmd, &client_env())));
        }
        Some(Command::Token(cmd)) if !cmd.is_direct() => {
            return ExitCode::from(runtime.block_on(token::token(cmd, &client_env())));
        }
        _ => {}
    }
    let (command, serve_args, server) = match cli.command {
        None => (
            Command::Serve(ServeArgs::default()),
            ServeArgs::default(),
            cli.server,
        ),
        Some(Command::Serve(mut a)) => {
            let server = cli.server.or(std::mem::take(&mut a.server));
            (Command::Serve(ServeArgs::default()), a, server)
        }
        Some(Command::Migrate(d)) => {
            let mut server = cli.server;
            server.database = server.database.or(d.clone());
            (Command::Migrate(d), ServeArgs::default(), server)
        }
        Some(Command::Token(TokenCommand::Create(a))) => {
            let server = ServerArgs {
                database: DatabaseArgs {
                    config: a.config.clone(),
                    database_url: a.database_url.clone(),
                    log: None,
                },
                ..ServerArgs::default()
            };
            (
                Command::Token(TokenCommand::Create(a)),
                ServeArgs::default(),
                server,
            )
        }
        Some(c) => (c, ServeArgs::default(), cli.server),
    };
    let env = match switchyard_env() {
        Ok(env) => env,
        Err(name) => {
            eprintln!("switchyard: invalid configuration: {name}: not valid UTF-8");
            return ExitCode::from(2);
        }
    };
    let overrides = Overrides {
        listen: server.listen,
        database_url: server.database.database_url,
        redis_url: server.redis_url,
        track: server.track,
        log: server.database.log,
        fault_delay_ms: serve_args.fault_delay_ms,
        fault_error_rate: serve_args.fault_error_rate,
    };
    let config = match Config::load(server.database.config.as_deref(), &env, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Token(TokenCommand::Create(args)) = command {
        return ExitCode::from(
            runtime.block_on(token::create_direct(args, &config.storage.database_url)),
        );
    }
    let telemetry = match switchyard_server::telemetry::init(&config, runtime.handle()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("switchyard: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Migrate(_) => migrate(config).await,
            _ => serve(config).await,
        }
    });
    // Flushed from this thread while the runtime's workers still run the
    // exports.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("switchyard: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let addr = config.listener.listen_addr().map_err(|e| e.to_string())?;
    let signal = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    switchyard_server::serve(config, listener, signal)
        .await
        .map_err(|e| e.message().to_owned())
}

async fn migrate(config: Config) -> Result<(), String> {
    let (store, created) =
        switchyard_core::store::Store::connect_creating(&config.storage.database_url)
            .await
            .map_err(|e| e.message().to_owned())?;
    if created {
        println!("switchyard: created the database");
    }
    store.migrate().await.map_err(|e| e.message().to_owned())?;
    let revision = store
        .current_revision()
        .await
        .map_err(|e| e.message().to_owned())?;
    println!(
        "switchyard: migrations applied ({:?}, revision {revision})",
        store.backend()
    );
    store.close().await;
    Ok(())
}

/// Registers SIGINT and SIGTERM handlers now (before the listener opens, so an
/// early signal is not lost) and returns a future that resolves on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt()).ok();
        let term = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(int) => {},
                () = wait(term) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What the client commands take from the environment.
fn client_env() -> commands::Environment {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    commands::Environment {
        token: var("SWITCHYARD_TOKEN"),
        run_id: var("GITHUB_RUN_ID"),
        git_sha: var("GITHUB_SHA"),
        step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        ci: std::env::var_os("CI").is_some(),
    }
}

/// Collects the `SWITCHYARD_*` and `OTEL_*` variables; errs with the name of
/// one that is not UTF-8.
fn switchyard_env() -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        if !k.starts_with("SWITCHYARD_") && !k.starts_with("OTEL_") {
            continue;
        }
        let v = v.into_string().map_err(|_| k.to_owned())?;
        env.insert(k.to_owned(), v);
    }
    Ok(env)
}
