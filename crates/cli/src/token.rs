//! `switchyard token create|list|revoke`: named tokens, through the server's
//! TokenService (every replica sharing its database accepts a new token and
//! refuses a revoked one within a second), or, for the first admin token
//! when it is lost, written straight into the database (`create --direct`).
//! Exit codes: 0 done, 1 the server refused (its message on stderr), 2 usage.

use std::time::Duration;

use clap::{Args, Subcommand};
use switchyard_api::v1::{CreateTokenRequest, ListTokensRequest, RevokeTokenRequest, Token};
use switchyard_core::{auth::Scope, token as tokens};

use crate::{
    commands::{EXIT_USAGE, Environment},
    flags::{ClientArgs, connect, refused},
};

/// What `token` does.
#[derive(Debug, Clone, Subcommand)]
pub enum TokenCommand {
    /// Create a named token and print its secret, alone, on standard output
    /// (shown once: only its digest is kept).
    Create(CreateArgs),
    /// List the named tokens (never their secrets).
    List(ListArgs),
    /// Revoke a named token: every replica refuses it within a second.
    Revoke(RevokeArgs),
}

/// `switchyard token create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The token's name, its caller's identity in logs and traces: 1 to 63
    /// characters of a-z, 0-9, '-', '_' and '.'.
    #[arg(long)]
    pub name: String,
    /// What it allows: admin, gating or tenant:<id>.
    #[arg(long, value_parser = Scope::parse)]
    pub scope: Scope,
    /// How long it is accepted (`90d`, `12h`, `30m`, `45s`) [default: until
    /// revoked].
    #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
    pub expires: Option<Duration>,
    /// Write the token straight into the database of the server's
    /// configuration (`--database-url`, `SWITCHYARD_DATABASE_URL`,
    /// `--config`), with no server and no token: for the first admin token
    /// when it is lost.
    #[arg(long, conflicts_with_all = ["target", "token"])]
    pub direct: bool,
    /// With --direct: the database [env: SWITCHYARD_DATABASE_URL; default
    /// sqlite://switchyard.db].
    #[arg(long, value_name = "URL", requires = "direct")]
    pub database_url: Option<String>,
    /// With --direct: the server's TOML configuration file, for its
    /// database.
    #[arg(long, value_name = "FILE", requires = "direct")]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `switchyard token list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `switchyard token revoke`.
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The token's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl TokenCommand {
    /// Whether it writes the database itself (and so needs the server's
    /// configuration).
    pub fn is_direct(&self) -> bool {
        matches!(self, TokenCommand::Create(a) if a.direct)
    }
}

/// Reads a lifetime: a whole number and a unit, `s`, `m`, `h` or `d`.
pub fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a lifetime such as 90d, 12h or 30m"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d (90d)")),
    };
    let d = Duration::from_secs(n.saturating_mul(unit));
    if d.is_zero() || d > tokens::MAX_LIFETIME {
        return Err(format!("{s:?}: at least 1s and at most ten years"));
    }
    Ok(d)
}

/// Runs a `token` command against a server; returns the exit code.
pub async fn token(cmd: TokenCommand, env: &Environment) -> u8 {
    match run(cmd, env).await {
        Ok(()) => 0,
        Err((code, message)) => {
            eprintln!("switchyard: {message}");
            code
        }
    }
}

/// `token create --direct`: writes the token into the existing, migrated
/// database at `database_url` (a SQLite file is never created: a mistyped
/// path is refused, not a new database); returns the exit code.
pub async fn create_direct(args: CreateArgs, database_url: &str) -> u8 {
    if let Some(path) = database_url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or(path);
        if !std::path::Path::new(path).is_file() {
            eprintln!(
                "switchyard: no SQLite database at {path:?}: give the server's (--database-url, SWITCHYARD_DATABASE_URL or --config)"
            );
            return EXIT_USAGE;
        }
    }
    let made = async {
        let store = switchyard_core::store::Store::connect(database_url).await?;
        let made = match store.check_schema().await {
            Ok(()) => {
                tokens::insert(
                    &store,
                    &args.name,
                    args.scope.clone(),
                    &switchyard_core::audit::Attribution::automatic(
                        tokens::DIRECT_CREATOR,
                        String::new(),
                        None,
                    ),
                    args.expires,
                )
                .await
            }
            Err(e) => Err(e),
        };
        store.close().await;
        made
    }
    .await;
    match made {
        Ok((info, secret)) => {
            eprintln!(
                "switchyard: token {:?} ({}) written to the database; every replica accepts it within a second. Its secret, shown once:",
                info.name, info.scope
            );
            println!("{secret}");
            0
        }
        Err(e) => {
            eprintln!("switchyard: {}", e.message());
            if e.kind() == switchyard_core::error::ErrorKind::AlreadyExists {
                1
            } else {
                EXIT_USAGE
            }
        }
    }
}

async fn run(cmd: TokenCommand, env: &Environment) -> Result<(), (u8, String)> {
    match cmd {
        TokenCommand::Create(a) => {
            let client = connect(&a.client, env).await?;
            let r = client
                .tokens()
                .create_token(CreateTokenRequest {
                    name: a.name,
                    scope: a.scope.to_string(),
                    lifetime: a.expires.map(|d| pbjson_types::Duration {
                        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                })
                .await
                .map_err(refused)?
                .into_inner();
            let token = r.token.unwrap_or_default();
            eprintln!(
                "switchyard: token {:?} ({}{}) created; every replica accepts it within a second. Its secret, shown once:",
                token.name,
                token.scope,
                expiry(&token)
            );
            println!("{}", r.secret);
            Ok(())
        }
        TokenCommand::List(a) => {
            let client = connect(&a.client, env).await?;
            let mut page_token = String::new();
            let mut rows = vec![[
                "NAME".to_owned(),
                "SCOPE".to_owned(),
                "CREATED BY".to_owned(),
                "CREATED".to_owned(),
                "EXPIRES".to_owned(),
            ]];
            loop {
                let r = client
                    .tokens()
                    .list_tokens(ListTokensRequest {
                        page_size: 1000,
                        page_token,
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                for t in r.tokens {
                    rows.push([
                        t.name.clone(),
                        t.scope.clone(),
                        t.created_by.clone(),
                        time(t.create_time.as_ref()),
                        t.expire_time
                            .as_ref()
                            .map_or_else(|| "never".to_owned(), |e| time(Some(e))),
                    ]);
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            print_table(&rows);
            Ok(())
        }
        TokenCommand::Revoke(a) => {
            let client = connect(&a.client, env).await?;
            client
                .tokens()
                .revoke_token(RevokeTokenRequest {
                    name: a.name.clone(),
                })
                .await
                .map_err(refused)?;
            eprintln!(
                "switchyard: token {:?} revoked; every replica refuses it within a second",
                a.name
            );
            Ok(())
        }
    }
}

/// A timestamp as RFC 3339 (its proto3 JSON form).
/// Prints `rows` (the first a header) as columns padded to their widest cell.
pub(crate) fn print_table<const N: usize>(rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

fn time(t: Option<&pbjson_types::Timestamp>) -> String {
    t.and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn expiry(t: &Token) -> String {
    match &t.expire_time {
        Some(e) => format!(", expires {}", time(Some(e))),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_take_a_whole_number_and_a_unit() {
        assert_eq!(parse_lifetime("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_lifetime("45s"), Ok(Duration::from_secs(45)));
        for bad in [
            "0d",
            "90",
            "1.5d",
            "d",
            "-1d",
            "3661d",
            "99999999999999999999d",
            "2w",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad} was accepted");
        }
    }
}
