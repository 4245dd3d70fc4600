//! Named tokens kept in the database: TokenService's use cases, their SQL,
//! and the reload that puts them in every replica's [`Authenticator`].
//!
//! A token is a name, a scope, who made it, when, and until when; its secret
//! (`sy_` and 64 hex digits, 256 random bits) is returned once, and only its
//! SHA-256 digest is kept (a digest of 256 random bits needs no slow hash).
//! Every replica reloads the table every [`RELOAD_EVERY`] (and at once after
//! its own writes), so a token made or revoked on one replica holds on all
//! of them within that time, with no restart and no bus.

use std::{sync::Arc, time::Duration};

use sqlx::Row;

use crate::{
    audit::{self, Attribution},
    auth::{Authenticator, Principal, Scope, StoredToken, digest},
    error::{Error, Result},
    service::page::{Page, PageRequest},
    store::{Store, now_us},
};

/// How often every replica reloads the stored tokens.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The longest lifetime a token may be given: ten years.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// The name of the admin token made at the first start of an empty
/// database.
pub const BOOTSTRAP_NAME: &str = "admin";

/// What `created_by` says of the token made at the first start.
pub const BOOTSTRAP_CREATOR: &str = "bootstrap";

/// What `created_by` says of a token written with direct database access
/// (`switchyard token create --direct`).
pub const DIRECT_CREATOR: &str = "direct";

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its name: the caller's identity.
    pub name: String,
    /// What it allows.
    pub scope: Scope,
    /// Who made it (a caller's name).
    pub created_by: String,
    /// When, µs since the epoch.
    pub created_at_us: i64,
    /// Until when it is accepted, µs since the epoch; none: until revoked.
    pub expires_at_us: Option<i64>,
}

/// Names a stored token may not take: the callers configured tokens and
/// flagd's anonymous calls are known by, and the creators `created_by`
/// names, so that a name always means one caller.
pub const RESERVED_NAMES: [&str; 4] = [
    "admin_token",
    crate::auth::FLAGD_ANONYMOUS_CALLER,
    BOOTSTRAP_CREATOR,
    DIRECT_CREATOR,
];

/// Checks a token's name: 1 to 63 characters of `a-z`, `0-9`, `-`, `_` and
/// `.`, starting with a letter or digit, and not one of [`RESERVED_NAMES`].
pub fn check_name(name: &str) -> Result<()> {
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::invalid_argument(
            "name",
            format!("{name:?} is reserved (it names a configured caller or a token's creator)"),
        ));
    }
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            "name",
            "must be 1 to 63 characters of a-z, 0-9, '-', '_' and '.', starting with a letter or digit",
        ))
    }
}

/// A new secret: `sy_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("sy_{}", hex::encode(bytes))
}

/// Writes a new token; returns it and its secret. A name in use is
/// ALREADY_EXISTS.
pub async fn insert(
    store: &Store,
    name: &str,
    scope: Scope,
    by: &Attribution,
    lifetime: Option<Duration>,
) -> Result<(TokenInfo, String)> {
    check_name(name)?;
    let now = now_us();
    let expires_at_us = match lifetime {
        None => None,
        Some(d) if d < Duration::from_secs(1) || d > MAX_LIFETIME => {
            return Err(Error::invalid_argument(
                "lifetime",
                "must be at least one second and at most ten years",
            ));
        }
        Some(d) => Some(now.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))),
    };
    let secret = new_secret();
    let info = TokenInfo {
        name: name.to_owned(),
        scope,
        created_by: by.actor.to_string(),
        created_at_us: now,
        expires_at_us,
    };
    let mut tx = store.pool().begin().await?;
    let written = sqlx::query(
        "INSERT INTO api_tokens (name, digest, scope, created_by, created_at_us, expires_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
    )
    .bind(info.name.clone())
    .bind(hex::encode(digest(&secret)))
    .bind(info.scope.to_string())
    .bind(info.created_by.clone())
    .bind(info.created_at_us)
    .bind(info.expires_at_us)
    .execute(&mut *tx)
    .await?;
    if written.rows_affected() == 0 {
        return Err(Error::already_exists(format!(
            "token {name:?} already exists; revoke it first, or choose another name"
        )));
    }
    audit::insert(&mut tx, now, by, &token_record("token.create", &info)).await?;
    tx.commit().await?;
    Ok((info, secret))
}

/// A token's audit entry: its name, scope and lifetime, never its secret.
fn token_record(action: &str, t: &TokenInfo) -> audit::Record {
    let shown = serde_json::json!({
        "name": t.name,
        "scope": t.scope.to_string(),
        "createdBy": t.created_by,
        "expireTime": t.expires_at_us.map(audit::rfc3339),
    });
    let (before, after) = if action == "token.revoke" {
        (Some(shown), None)
    } else {
        (None, Some(shown))
    };
    audit::Record {
        action: action.to_owned(),
        revision: None,
        flag_key: None,
        tenant_id: None,
        before,
        after,
    }
}

/// At the first start of an empty database (no stored token), makes the
/// admin token [`BOOTSTRAP_NAME`] and returns its secret; none when a token
/// is stored already (or another replica made it first).
pub async fn bootstrap(store: &Store) -> Result<Option<String>> {
    let any = sqlx::query("SELECT 1 FROM api_tokens LIMIT 1")
        .fetch_optional(store.pool())
        .await?;
    if any.is_some() {
        return Ok(None);
    }
    let by = Attribution::automatic(BOOTSTRAP_CREATOR, String::new(), None);
    match insert(store, BOOTSTRAP_NAME, Scope::Admin, &by, None).await {
        Ok((_, secret)) => Ok(Some(secret)),
        Err(e) if e.kind() == crate::error::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every stored token with its digest, for the authenticator.
async fn load(store: &Store) -> Result<Vec<StoredToken>> {
    let rows = sqlx::query("SELECT name, digest, scope, expires_at_us FROM api_tokens")
        .fetch_all(store.pool())
        .await?;
    let mut tokens = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get(0)?;
        let digest: String = row.try_get(1)?;
        let scope: String = row.try_get(2)?;
        let expires_at_us: Option<i64> = row.try_get(3)?;
        // A row this build cannot read is skipped, not a reason to accept
        // nothing: it can be revoked by name.
        let (Ok(scope), Ok(digest)) = (Scope::parse(&scope), hex::decode(&digest)) else {
            tracing::warn!(token = %name, "a stored token's scope or digest is unreadable; it is not accepted");
            continue;
        };
        let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) else {
            tracing::warn!(token = %name, "a stored token's digest is not 32 bytes; it is not accepted");
            continue;
        };
        tokens.push(StoredToken::new(
            digest,
            Principal::named(scope, &name),
            expires_at_us,
        ));
    }
    Ok(tokens)
}

fn info(row: &sqlx::any::AnyRow) -> Result<TokenInfo> {
    let scope: String = row.try_get(1)?;
    Ok(TokenInfo {
        name: row.try_get(0)?,
        scope: Scope::parse(&scope)
            .map_err(|e| Error::internal("reading a stored token's scope", e))?,
        created_by: row.try_get(2)?,
        created_at_us: row.try_get(3)?,
        expires_at_us: row.try_get(4)?,
    })
}

/// TokenService's use cases. Every one needs an admin token.
#[derive(Clone)]
pub struct TokenService {
    store: Store,
    auth: Arc<Authenticator>,
    /// Held from a reload's read to its store, so that a reload that read
    /// the table before a write cannot put back what the write changed
    /// after the write's own reload.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService").finish_non_exhaustive()
    }
}

impl TokenService {
    /// The service over `store`, reloading into `auth`.
    pub fn new(store: Store, auth: Arc<Authenticator>) -> TokenService {
        TokenService {
            store,
            auth,
            reloading: Arc::default(),
        }
    }

    /// Makes a token; returns it and its secret.
    pub async fn create(
        &self,
        caller: &Principal,
        name: &str,
        scope: &str,
        lifetime: Option<Duration>,
    ) -> Result<(TokenInfo, String)> {
        caller.require_admin()?;
        check_name(name)?;
        let scope = Scope::parse(scope).map_err(|e| Error::invalid_argument("scope", e))?;
        let by = Attribution::of(caller)?;
        let made = insert(&self.store, name, scope, &by, lifetime).await?;
        self.reload_after_write().await;
        Ok(made)
    }

    /// One page of the tokens, by name.
    pub async fn list(&self, caller: &Principal, page: &PageRequest) -> Result<Page<TokenInfo>> {
        caller.require_admin()?;
        let (size, after) = page.resolve(100, 1000)?;
        let rows = sqlx::query(
            "SELECT name, scope, created_by, created_at_us, expires_at_us FROM api_tokens \
             WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(after)
        .bind(i64::try_from(size + 1).unwrap_or(i64::MAX))
        .fetch_all(self.store.pool())
        .await?;
        let mut items = rows.iter().map(info).collect::<Result<Vec<_>>>()?;
        let more = items.len() > size;
        items.truncate(size);
        Ok(Page::new(items, more, |t| &t.name))
    }

    /// Who `caller` is: its name and scope (any token may ask).
    pub fn caller(&self, caller: &Principal) -> (String, Scope) {
        (caller.caller().to_string(), caller.scope().clone())
    }

    /// Revokes the token `name`.
    pub async fn revoke(&self, caller: &Principal, name: &str) -> Result<()> {
        caller.require_admin()?;
        let by = Attribution::of(caller)?;
        check_name(name)?;
        let mut tx = self.store.pool().begin().await?;
        let gone = sqlx::query(
            "DELETE FROM api_tokens WHERE name = $1 \
             RETURNING name, scope, created_by, created_at_us, expires_at_us",
        )
        .bind(name.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(gone) = gone else {
            return Err(Error::not_found(format!("token {name:?}")));
        };
        let record = token_record("token.revoke", &info(&gone)?);
        audit::insert(&mut tx, now_us(), &by, &record).await?;
        tx.commit().await?;
        self.reload_after_write().await;
        Ok(())
    }

    /// Puts the stored tokens in the authenticator.
    pub async fn reload(&self) -> Result<()> {
        let _one_at_a_time = self.reloading.lock().await;
        self.auth.replace_stored(load(&self.store).await?);
        Ok(())
    }

    /// A reload after a committed write: its failure is logged, not
    /// answered (the write is done, and the secret of a new token must reach
    /// its caller); the next periodic reload catches up.
    async fn reload_after_write(&self) {
        if let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "reloading the stored tokens after a write failed; the next reload catches up");
        }
    }
}
