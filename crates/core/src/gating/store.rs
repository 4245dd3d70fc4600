//! Gate runs: every smoke verdict (and every recorded canary verdict), kept
//! for history on SQLite or PostgreSQL.
//!
//! A run's report is stored as the JSON of its document type (`report.rs`),
//! which carries its own format version. Runs are not replicated state: they
//! take no revision and are not in the change log; each records the revision
//! in force when it was judged.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::report::{CanaryReport, SmokeSummary, Verdict};
use crate::{
    error::{Error, Result},
    store::Store,
};

/// What kind of gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A smoke run against a threshold.
    Smoke,
    /// A canary against its baseline.
    Canary,
}

impl Kind {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Smoke => "smoke",
            Kind::Canary => "canary",
        }
    }

    /// Parses a stored or requested name.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "smoke" => Some(Kind::Smoke),
            "canary" => Some(Kind::Canary),
            _ => None,
        }
    }
}

/// A run's document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Report {
    /// A smoke summary.
    Smoke(Box<SmokeSummary>),
    /// A canary report.
    Canary(Box<CanaryReport>),
}

impl Report {
    /// The kind of gate it reports.
    pub fn kind(&self) -> Kind {
        match self {
            Report::Smoke(_) => Kind::Smoke,
            Report::Canary(_) => Kind::Canary,
        }
    }

    fn verdict(&self) -> Verdict {
        match self {
            Report::Smoke(s) => s.verdict.status,
            Report::Canary(c) => c.verdict.status,
        }
    }
}

/// A kept verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRun {
    /// Server-assigned id.
    pub id: String,
    /// The caller's run id.
    pub run_id: String,
    /// The target (smoke) or canary.
    pub target: String,
    /// The revision in force when it was judged.
    pub revision: i64,
    /// When, µs since the epoch.
    pub created_at_us: i64,
    /// The document.
    pub report: Report,
    /// The length of the document as kept (its JSON), in bytes.
    pub stored_bytes: usize,
}

impl GateRun {
    /// An upper bound of the run's protobuf encoding in a listing: a report
    /// encodes in at most twice its JSON (a number or a map entry may take
    /// more bytes than its JSON text, never twice), the run's own fields and
    /// its reasons (a copy of the verdict's) in at most as much again.
    pub fn encoded_bound(&self) -> usize {
        3 * self.stored_bytes + self.id.len() + self.run_id.len() + self.target.len() + 256
    }

    /// The verdict.
    pub fn verdict(&self) -> Verdict {
        self.report.verdict()
    }
}

/// Keeps `report`; returns the run.
pub async fn insert(
    store: &Store,
    report: Report,
    run_id: &str,
    target: &str,
    revision: i64,
) -> Result<GateRun> {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    let run = GateRun {
        id: hex::encode(bytes),
        run_id: run_id.to_owned(),
        target: target.to_owned(),
        revision,
        created_at_us: crate::store::now_us(),
        report,
        stored_bytes: 0,
    };
    let json = serde_json::to_string(&run.report)
        .map_err(|e| Error::internal("encoding a gate run", e))?;
    let run = GateRun {
        stored_bytes: json.len(),
        ..run
    };
    // What is kept must read back: a report that would not is refused here
    // rather than breaking every later listing.
    serde_json::from_str::<Report>(&json)
        .map_err(|e| Error::internal("encoding a gate run that reads back", e))?;
    sqlx::query(
        "INSERT INTO gate_runs (id, kind, verdict, run_id, report, created_at_us, target, revision) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(run.id.clone())
    .bind(run.report.kind().as_str())
    .bind(run.verdict().as_str())
    .bind(run.run_id.clone())
    .bind(json)
    .bind(run.created_at_us)
    .bind(run.target.clone())
    .bind(run.revision)
    .execute(store.pool())
    .await?;
    Ok(run)
}

/// Where a page starts: after this run (by time, then id), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The last run's time.
    pub created_at_us: i64,
    /// The last run's id.
    pub id: String,
}

impl Cursor {
    /// The key a page token names: `<time>:<id>`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.created_at_us, self.id)
    }

    /// Reads a page key (empty: the first page).
    pub fn parse(key: &str) -> Result<Option<Cursor>> {
        if key.is_empty() {
            return Ok(None);
        }
        let bad =
            || Error::invalid_argument("page_token", "is not a token returned by this server");
        let (at, id) = key.split_once(':').ok_or_else(bad)?;
        Ok(Some(Cursor {
            created_at_us: at.parse().map_err(|_| bad())?,
            id: id.to_owned(),
        }))
    }
}

/// Returns up to `limit` runs after `after`, newest first, only of `kind`
/// and `target` when given, and whether more follow.
pub async fn list(
    store: &Store,
    kind: Option<Kind>,
    target: &str,
    after: Option<&Cursor>,
    limit: usize,
) -> Result<(Vec<GateRun>, bool)> {
    let (at, id) = after.map_or((i64::MAX, String::new()), |c| {
        (c.created_at_us, c.id.clone())
    });
    let rows = sqlx::query(
        "SELECT id, run_id, report, created_at_us, target, revision FROM gate_runs \
         WHERE ($1 = '' OR kind = $1) AND ($2 = '' OR target = $2) \
         AND (created_at_us < $3 OR (created_at_us = $3 AND id < $4)) \
         ORDER BY created_at_us DESC, id DESC LIMIT $5",
    )
    .bind(kind.map_or("", Kind::as_str))
    .bind(target)
    .bind(at)
    .bind(id)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
    .fetch_all(store.pool())
    .await?;
    let more = rows.len() > limit;
    let runs = rows
        .iter()
        .take(limit)
        .map(|r| {
            let id: String = r.try_get(0)?;
            let text: String = r.try_get(2)?;
            let report = serde_json::from_str(&text)
                .map_err(|e| Error::internal(&format!("reading gate run {id}"), e))?;
            Ok(GateRun {
                id,
                run_id: r.try_get(1)?,
                stored_bytes: text.len(),
                report,
                created_at_us: r.try_get(3)?,
                target: r.try_get(4)?,
                revision: r.try_get(5)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((runs, more))
}
