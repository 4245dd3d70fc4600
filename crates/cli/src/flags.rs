//! `switchyard flags import FILE` and `switchyard flags export`: flags in
//! flagd's flag-definition format, through the server's `ImportFlags` and
//! `ExportFlags` (so a flagd user moves with one command, `$evaluators`
//! included). Exit codes: 0 done, 1 the server refused (its message on
//! stderr), 2 usage (a file that cannot be read, a server that cannot be
//! reached).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use switchyard_api::{
    client::{Client, ClientError, check_tls, endpoint_with},
    v1::{ExportFlagsRequest, ImportFlagsRequest},
};
use switchyard_server::grpc::flag::from_struct;

use crate::commands::{EXIT_USAGE, Environment, TlsArgs};

/// What `flags` does.
#[derive(Debug, Clone, Subcommand)]
pub enum FlagsCommand {
    /// Create or update every flag of a flagd flag-definition file (`-`:
    /// standard input); nothing is written when one flag is refused.
    Import(ImportArgs),
    /// Write every flag as a flagd flag-definition file to standard output.
    Export(ExportArgs),
}

/// Where the server is and who calls it.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server (`host:port`, `http://host:port` or `https://host:port`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    pub target: String,
    /// An admin token [default: $SWITCHYARD_TOKEN].
    #[arg(long, default_value = "", hide_default_value = true)]
    pub token: String,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// `switchyard flags import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The flagd flag-definition file (JSON).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Delete every flag the file does not hold.
    #[arg(long)]
    pub prune: bool,
    /// Import rules that compile but break flagd's targeting schema (as
    /// flagd loads them), each reported on standard error.
    #[arg(long)]
    pub allow_schema_violations: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `switchyard flags export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs a `flags` command; returns the exit code.
pub async fn flags(cmd: FlagsCommand, env: &Environment) -> u8 {
    match run(cmd, env).await {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("switchyard: {message}");
            code
        }
    }
}

pub(crate) async fn connect(c: &ClientArgs, env: &Environment) -> Result<Client, (u8, String)> {
    let token = if c.token.is_empty() {
        env.token.clone().unwrap_or_default()
    } else {
        c.token.clone()
    };
    c.tls
        .used_by([c.target.as_str()])
        .map_err(|e| (EXIT_USAGE, e))?;
    let tls = c.tls.options().map_err(|e| (EXIT_USAGE, e))?;
    check_tls(&c.target, &tls)
        .await
        .map_err(|e| (EXIT_USAGE, e.to_string()))?;
    let endpoint = endpoint_with(&c.target, &tls)
        .map_err(|e| (EXIT_USAGE, e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5));
    Client::connect_to(endpoint, &token)
        .await
        .map_err(|e| (EXIT_USAGE, format!("{}: {e}", c.target)))
}

pub(crate) fn refused(e: tonic::Status) -> (u8, String) {
    (1, ClientError::Call(e).to_string())
}

async fn run(cmd: FlagsCommand, env: &Environment) -> Result<(), (u8, String)> {
    match cmd {
        FlagsCommand::Import(a) => {
            let text = if a.file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&a.file)
            }
            .map_err(|e| (EXIT_USAGE, format!("{}: {e}", a.file.display())))?;
            let file: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| (EXIT_USAGE, format!("{}: not JSON: {e}", a.file.display())))?;
            if !file.is_object() {
                return Err((
                    EXIT_USAGE,
                    format!("{}: not a flagd flag-definition object", a.file.display()),
                ));
            }
            let client = connect(&a.client, env).await?;
            let r = client
                .flags()
                .import_flags(ImportFlagsRequest {
                    // As text: `0.0` stays a float variant.
                    configuration: None,
                    configuration_text: text,
                    prune: a.prune,
                    allow_schema_violations: a.allow_schema_violations,
                })
                .await
                .map_err(refused)?
                .into_inner();
            for w in &r.warnings {
                eprintln!("switchyard: warning: {w}");
            }
            println!(
                "{}: {} created, {} updated, {} unchanged, {} deleted (revision {})",
                a.file.display(),
                r.created.len(),
                r.updated.len(),
                r.unchanged.len(),
                r.deleted.len(),
                r.revision
            );
            Ok(())
        }
        FlagsCommand::Export(a) => {
            let client = connect(&a.client, env).await?;
            let r = client
                .flags()
                .export_flags(ExportFlagsRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            let file: serde_json::Value = if r.configuration_text.is_empty() {
                serde_json::Value::Object(
                    from_struct("configuration", &r.configuration.unwrap_or_default())
                        .map_err(|e| (1, e.to_string()))?,
                )
            } else {
                serde_json::from_str(&r.configuration_text).map_err(|e| (1, e.to_string()))?
            };
            let text = serde_json::to_string_pretty(&file).map_err(|e| (1, e.to_string()))?;
            println!("{text}");
            Ok(())
        }
    }
}
