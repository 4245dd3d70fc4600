//! Guarded rollouts: a flag's variant goes out stage by stage, each stage
//! judged on the user's own traffic in Prometheus, rolled back on a FAIL
//! without a person, every step in the audit log.
//!
//! - [`model`]: the plan, the states, the `fractional` rule each stage
//!   writes (monotone: raising the percentage only adds units).
//! - [`judge`]: a stage's cohorts read from Prometheus and judged by the
//!   canary judge.
//! - [`store`]: the rows, every write a compare-and-set on the version; the
//!   lease that lets one replica drive a rollout at a time.
//! - [`RolloutService`] (here): the use cases (start, read, pause, resume,
//!   abort, skip, kill) and the driver every replica runs ([`RolloutService::drive`]).
//!
//! A step that changes the flag writes the flag (a new revision, announced
//! as any write), the rollout's row and the audit entry in one transaction:
//! a stage is never written twice nor skipped, whichever replica drives.

pub mod judge;
pub mod model;
pub mod store;

use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::{
    audit::{self, Attribution},
    auth::Principal,
    changelog::{Announce, Append, Audit},
    error::{Error, ErrorKind, Result},
    flag::{
        definition::DefinitionUpdate,
        limits::validate_key,
        store::{self as flags, FlagUpdate},
    },
    gating::{budget::BudgetQuery, report::Verdict},
    id::TenantId,
    service::page::{Page, PageRequest},
    store::{Store, now_us},
};
use model::{Rollout, Spec, State, TOTAL_WEIGHT, percent_of};
use store::Writer;

/// How long a replica's lease on a rollout lasts without renewal: another
/// replica takes a rollout over at most this long (plus a tick) after its
/// driver died.
pub const LEASE_US: i64 = 10_000_000;

/// How often every replica looks at the running rollouts.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// How a step refused because the flag was changed by someone else begins.
const CHANGED_BY_SOMEONE_ELSE: &str = "the flag was changed since the rollout's last step";

/// How a write refused because the rollout's row moved begins.
const ROW_MOVED: &str = "changed meanwhile";

/// What a person asks of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Hold it where it is.
    Pause,
    /// Go on from where it is, judging the current stage afresh.
    Resume,
    /// Stop it and set the treatment back to 0 %.
    Abort,
    /// Go to the next stage without judging this one.
    Skip,
    /// The kill switch: the treatment to 0 % at once, whatever the
    /// rollout's state or the flag's; a gating token may pull it too.
    Kill,
}

/// The rollouts' use cases and driver.
#[derive(Clone)]
pub struct RolloutService {
    store: Store,
    announce: Arc<dyn Announce>,
    prometheus: Option<Arc<dyn BudgetQuery>>,
    max_def_bytes: usize,
    /// The bytes a page of rollouts may take.
    page_budget: usize,
    /// This replica's name in leases.
    owner: Arc<str>,
    /// When this replica last looked at each rollout's stage for an early
    /// FAIL.
    checked: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

impl std::fmt::Debug for RolloutService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutService")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What the flag gets at a step.
enum FlagStep {
    /// The rollout's rule at this weight.
    Weight(u32),
    /// Back to what it was before (the treatment at 0 %).
    Restore,
    /// Done: fleet-wide at 100 %, the treatment becomes the default variant
    /// and the rule goes.
    Complete,
}

impl RolloutService {
    /// The service over `store`; `prometheus` is where stages are judged
    /// (none: every stage is inconclusive, and moves only by hand).
    pub fn new(
        store: Store,
        announce: Arc<dyn Announce>,
        prometheus: Option<Arc<dyn BudgetQuery>>,
        max_message_bytes: usize,
    ) -> RolloutService {
        let max_def_bytes = crate::flag::part_budget(max_message_bytes);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into());
        let owner = format!("{host}-{}-{}", std::process::id(), random_hex(4));
        RolloutService {
            store,
            announce,
            prometheus,
            max_def_bytes,
            page_budget: crate::service::page::byte_budget(max_message_bytes),
            owner: Arc::from(owner),
            checked: Arc::default(),
        }
    }

    /// Starts a rollout of `spec` (its `control` empty: the flag's default
    /// variant) and writes its first stage. Admin.
    pub async fn start(&self, p: &Principal, spec: Result<Spec>) -> Result<Rollout> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        let mut spec = spec?;
        validate_key("rollout.flag_key", &spec.flag_key)?;
        for (i, t) in spec.tenants.iter().enumerate() {
            TenantId::parse(t, &format!("rollout.tenants[{i}]"))?;
        }
        let mut w = self.store.begin_write().await?;
        let def = flags::current(&mut w, &spec.flag_key).await?;
        store::refuse_second(&mut w, &spec.flag_key).await?;
        if spec.control.is_empty() {
            spec.control = def.default_variant.clone().ok_or_else(|| {
                Error::failed_precondition(format!(
                    "flag {:?} has no default variant: the control is the variant the others keep and a rollback restores; set the flag's default variant first",
                    spec.flag_key
                ))
            })?;
        }
        spec.flag_created_us = def.created_at_us;
        model::check(&spec)?;
        let known = def.variants.keys().cloned().collect::<Vec<_>>().join(", ");
        for (field, v) in [
            ("rollout.treatment", &spec.treatment),
            ("rollout.control", &spec.control),
        ] {
            if !def.variants.contains_key(v) {
                return Err(Error::invalid_argument(
                    field,
                    format!(
                        "flag {:?} has no variant {v:?} (it has {known})",
                        spec.flag_key
                    ),
                ));
            }
        }
        if def.default_variant.as_deref() != Some(spec.control.as_str()) {
            return Err(Error::invalid_argument(
                "rollout.control",
                format!(
                    "must be the flag's default variant ({}), which the others keep and a rollback restores",
                    def.default_variant.as_deref().unwrap_or("none")
                ),
            ));
        }
        let otherwise = def.targeting.as_ref().map(|r| r.source().clone());
        if otherwise.is_some() && spec.tenants.is_empty() {
            return Err(Error::failed_precondition(format!(
                "flag {:?} has targeting, which a rollout of every tenant would replace: name the tenants (the others keep the rule), or remove the targeting first",
                spec.flag_key
            )));
        }
        let now = now_us();
        let rollout = Rollout {
            id: format!("ro-{}", random_hex(6)),
            state: State::Running,
            stage: 0,
            weight: spec.stages[0].weight,
            stage_started_us: now,
            holds: 0,
            flag_revision: w.revision,
            last_verdict: None,
            baseline: None,
            reason: String::new(),
            version: 1,
            created_by: by.actor.to_string(),
            created_at_us: now,
            updated_at_us: now,
            spec: Spec { otherwise, ..spec },
        };
        let written = flags::update_in(
            &mut w,
            &rollout.spec.flag_key,
            self.flag_update(&rollout, FlagStep::Weight(rollout.weight)),
            def.revision,
            self.max_def_bytes,
        )
        .await?;
        store::insert(&mut w, &rollout).await?;
        let by = with_reason(by, &format!("{} started: {}", rollout.id, place(&rollout)));
        let committed = w
            .commit_change(
                written.change,
                Audit {
                    by: &by,
                    before: Some(written.before),
                    after: Some(written.after),
                },
            )
            .await?;
        self.announce.committed(&committed).await;
        metrics(&rollout);
        Ok(rollout)
    }

    /// Reads a rollout (admin or gating).
    pub async fn get(&self, p: &Principal, id: &str) -> Result<Rollout> {
        p.require_gating()?;
        check_id(id)?;
        store::get(&self.store, id).await
    }

    /// Rollouts newest first, of `flag_key` when given (admin or gating).
    pub async fn list(
        &self,
        p: &Principal,
        flag_key: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Rollout>> {
        p.require_gating()?;
        if let Some(f) = flag_key {
            validate_key("flag_key", f)?;
        }
        let (size, after) = page.resolve(50, 500)?;
        let after = if after.is_empty() {
            None
        } else {
            let (at, id) = after.split_once('/').ok_or_else(bad_token)?;
            Some((at.parse().map_err(|_| bad_token())?, id.to_owned()))
        };
        let (items, more) = store::list(&self.store, flag_key, after, size).await?;
        let (items, more) = crate::service::page::fit(items, more, self.page_budget, size_bound);
        let keys: Vec<String> = items
            .iter()
            .map(|r| format!("{}/{}", r.created_at_us, r.id))
            .collect();
        let page = Page::new(keys, more, String::as_str);
        Ok(Page {
            items,
            next_token: page.next_token,
        })
    }

    /// Applies a person's `action` to rollout `id`; returns it after.
    /// Admin; the kill switch also takes a gating token.
    pub async fn act(&self, p: &Principal, id: &str, action: Action) -> Result<Rollout> {
        match action {
            Action::Kill => p.require_gating()?,
            _ => p.require_admin()?,
        }
        let by = Attribution::of(p)?;
        check_id(id)?;
        // A compare-and-set: read again when the driver moved it meanwhile.
        let mut tries = 0;
        loop {
            let r = store::get(&self.store, id).await?;
            match self.act_once(&by, r, action).await {
                Err(e)
                    if e.kind() == ErrorKind::FailedPrecondition
                        && e.message().contains(ROW_MOVED)
                        && tries < 5 =>
                {
                    tries += 1;
                }
                // The flag is gone (or is another flag under its key): the
                // rollout has nothing left to steer, and ends.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let r = store::get(&self.store, id).await?;
                    if !r.state.is_final() {
                        let mut ended = r.clone();
                        ended.version += 1;
                        ended.updated_at_us = now_us();
                        ended.state = State::Aborted;
                        ended.weight = 0;
                        ended.reason = format!("ended: {}", e.message());
                        let by = with_reason(by.clone(), &format!("{id} ended: the flag is gone"));
                        self.save_only(&r, &ended, &by, "rollout.abort", Writer::Person)
                            .await?;
                    }
                    return match action {
                        Action::Abort | Action::Kill => store::get(&self.store, id).await,
                        _ => Err(Error::failed_precondition(format!(
                            "{}: rollout {id} has ended",
                            e.message()
                        ))),
                    };
                }
                other => return other,
            }
        }
    }

    async fn act_once(&self, by: &Attribution, r: Rollout, action: Action) -> Result<Rollout> {
        let refuse = |what: &str| {
            Err(Error::failed_precondition(format!(
                "rollout {} is {}: {what}",
                r.id,
                r.state.as_str()
            )))
        };
        let now = now_us();
        let mut next = r.clone();
        next.version += 1;
        next.updated_at_us = now;
        let reason = |what: &str| with_reason(by.clone(), &format!("{} {what}", r.id));
        match action {
            Action::Pause => {
                if r.state != State::Running {
                    return refuse("only a running rollout can be paused");
                }
                next.state = State::Paused;
                next.reason = format!("paused by {}", by.actor);
                self.save_only(
                    &r,
                    &next,
                    &reason("paused"),
                    "rollout.pause",
                    Writer::Person,
                )
                .await?;
            }
            Action::Resume => {
                if r.state != State::Paused {
                    return refuse("only a paused rollout can be resumed");
                }
                next.state = State::Running;
                next.holds = 0;
                next.stage_started_us = now;
                next.reason = String::new();
                // The rollout's rule again, over whatever the flag is now.
                self.step(
                    &r,
                    next.clone(),
                    FlagStep::Weight(next.weight),
                    0,
                    &reason(&format!("resumed: {}", place(&next))),
                    Writer::Person,
                )
                .await?;
            }
            Action::Abort | Action::Kill => {
                if r.state.is_final() {
                    return refuse("it has ended already");
                }
                next.state = State::Aborted;
                next.weight = 0;
                next.reason = format!(
                    "{} by {}: the treatment is back at 0 %",
                    if action == Action::Kill {
                        "killed"
                    } else {
                        "aborted"
                    },
                    by.actor
                );
                let what = format!(
                    "{}: the treatment back to 0 %",
                    if action == Action::Kill {
                        "killed"
                    } else {
                        "aborted"
                    }
                );
                self.step(
                    &r,
                    next.clone(),
                    FlagStep::Restore,
                    0,
                    &reason(&what),
                    Writer::Person,
                )
                .await?;
            }
            Action::Skip => {
                if r.state.is_final() {
                    return refuse("it has ended already");
                }
                let what = format!("stage {} skipped by {}", r.stage + 1, by.actor);
                self.advance(&r, next, None, &reason(&what), Writer::Person)
                    .await?;
            }
        }
        store::get(&self.store, &r.id).await
    }

    /// Moves `r` past its current stage: to the next one (at once), or to
    /// its end when it was the last.
    async fn advance(
        &self,
        r: &Rollout,
        mut next: Rollout,
        verdict: Option<Json>,
        by: &Attribution,
        writer: Writer<'_>,
    ) -> Result<()> {
        // A passed stage's control is what a stage at 100 % is judged
        // against (not at 100 %, where the control is that baseline itself).
        if let Some(control) = verdict
            .as_ref()
            .filter(|v| v.get("control_from").is_none())
            .and_then(|v| v.get("cohorts")?.get("control"))
        {
            next.baseline = Some(control.clone());
        }
        next.last_verdict = verdict.or(next.last_verdict);
        next.holds = 0;
        next.stage_started_us = now_us();
        if r.stage + 1 < r.spec.stages.len() {
            next.stage = r.stage + 1;
            next.weight = r.spec.stages[next.stage].weight;
            // A paused rollout skipped by a person stays paused.
            if next.state == State::Running {
                next.reason = String::new();
            }
            let by = with_reason(by.clone(), &format!("now {}", place(&next)));
            self.step(
                r,
                next.clone(),
                FlagStep::Weight(next.weight),
                r.flag_revision,
                &by,
                writer,
            )
            .await
        } else {
            next.state = State::Succeeded;
            next.reason = format!("every stage passed at {} %", percent_of(r.weight));
            let how = if r.weight == TOTAL_WEIGHT && r.spec.tenants.is_empty() {
                FlagStep::Complete
            } else {
                FlagStep::Weight(r.weight)
            };
            let by = with_reason(by.clone(), "every stage passed: done");
            self.step(r, next, how, r.flag_revision, &by, writer).await
        }
    }

    /// The flag's change at a step.
    fn flag_update(&self, r: &Rollout, step: FlagStep) -> FlagUpdate {
        let (targeting, default_variant) = match step {
            FlagStep::Weight(w) => (
                Some(model::rule(&r.spec, w, r.spec.otherwise.as_ref())),
                None,
            ),
            FlagStep::Restore => (r.spec.otherwise.clone(), None),
            FlagStep::Complete => (None, Some(Some(r.spec.treatment.clone()))),
        };
        FlagUpdate {
            definition: Some(DefinitionUpdate {
                targeting: Some(targeting),
                default_variant,
                ..DefinitionUpdate::default()
            }),
            ..FlagUpdate::default()
        }
    }

    /// Writes the flag's `step` (compared with `expected_flag`, 0: forced),
    /// the rollout's row as `next` (compared with `r`'s version) and the
    /// audit entry, in one transaction; announces the change.
    async fn step(
        &self,
        r: &Rollout,
        mut next: Rollout,
        step: FlagStep,
        expected_flag: i64,
        by: &Attribution,
        writer: Writer<'_>,
    ) -> Result<()> {
        let mut w = self.store.begin_write().await?;
        let key = &r.spec.flag_key;
        let flag = flags::current(&mut w, key).await?;
        if r.spec.flag_created_us != 0 && flag.created_at_us != r.spec.flag_created_us {
            return Err(Error::not_found(format!(
                "flag {key:?} as the rollout started (it was deleted and created again)"
            )));
        }
        if expected_flag != 0 && flag.revision != expected_flag {
            return Err(Error::failed_precondition(format!(
                "{CHANGED_BY_SOMEONE_ELSE} (the rollout wrote revision {expected_flag}, the flag is at {}): resume the rollout to apply its rule over the change, or abort it",
                flag.revision
            )));
        }
        let written = flags::update_in(
            &mut w,
            key,
            self.flag_update(r, step),
            expected_flag,
            self.max_def_bytes,
        )
        .await?;
        next.flag_revision = w.revision;
        store::save(&mut w.tx, &next, writer).await?;
        let committed = w
            .commit_change(
                written.change,
                Audit {
                    by,
                    before: Some(written.before),
                    after: Some(written.after),
                },
            )
            .await?;
        self.announce.committed(&committed).await;
        metrics(&next);
        Ok(())
    }

    /// Writes the rollout's row as `next` and an audit entry `action`,
    /// without touching the flag (no revision is taken).
    async fn save_only(
        &self,
        r: &Rollout,
        next: &Rollout,
        by: &Attribution,
        action: &str,
        writer: Writer<'_>,
    ) -> Result<()> {
        let mut tx = self.store.pool().begin().await?;
        store::save(&mut tx, next, writer).await?;
        let record = audit::Record {
            action: action.to_owned(),
            revision: None,
            flag_key: Some(r.spec.flag_key.clone()),
            tenant_id: None,
            before: Some(summary(r)),
            after: Some(summary(next)),
        };
        audit::insert(&mut tx, next.updated_at_us, by, &record).await?;
        tx.commit().await?;
        metrics(next);
        Ok(())
    }

    /// One look at the running rollouts: each whose lease this replica
    /// holds (or takes) and whose stage has held long enough is judged and
    /// moved. Every replica runs it every [`TICK`].
    pub async fn drive(&self) {
        let running = match store::running(&self.store).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading the running rollouts failed");
                return;
            }
        };
        for r in running {
            let now = now_us();
            match store::lease(&self.store, &r.id, &self.owner, now, now + LEASE_US).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(rollout = %r.id, error = %e, "taking a rollout's lease failed");
                    continue;
                }
            }
            let id = r.id.clone();
            if let Err(e) = self.drive_one(r).await {
                tracing::warn!(rollout = %id, error = %e, "a rollout's step failed; it is tried again");
            }
        }
    }

    async fn drive_one(&self, r: Rollout) -> Result<()> {
        let stage = r.current().clone();
        let now = now_us();
        let hold_us = i64::try_from(stage.hold_s).unwrap_or(i64::MAX / 2) * 1_000_000;
        let elapsed = now - r.stage_started_us;
        let due = elapsed >= hold_us;
        if !due {
            // During the hold, a look every `check_every` for an early FAIL.
            let every = r.check_every_us();
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            let last = checked
                .get(&r.id)
                .copied()
                .filter(|t| *t >= r.stage_started_us)
                .unwrap_or(r.stage_started_us);
            if now - last < every || self.prometheus.is_none() {
                return Ok(());
            }
            checked.insert(r.id.clone(), now);
        }
        let window_s = u64::try_from(elapsed / 1_000_000)
            .unwrap_or(stage.hold_s)
            .max(1);
        let mut judgment = judge::judge_stage(self.prometheus.as_deref(), &r, window_s).await;
        if !due {
            if judgment.verdict != Verdict::Fail {
                return Ok(());
            }
            judgment.document["early"] = json!(true);
        }
        let cohort = |name: &str| {
            let c = &judgment.document["cohorts"][name];
            Some((c["p95_ms"].as_f64()?, c["error_rate"].as_f64()?))
        };
        crate::telemetry::metrics::rollout_verdict(
            &r.id,
            &r.spec.flag_key,
            judgment.verdict.as_str(),
            &[
                ("treatment", cohort("treatment")),
                ("control", cohort("control")),
            ],
        );
        let writer = Writer::Driver {
            owner: &self.owner,
            lease_until_us: now_us() + LEASE_US,
        };
        let mut next = r.clone();
        next.version += 1;
        next.updated_at_us = now_us();
        let actor = r.actor();
        let by = |reason: String| {
            Attribution::automatic(&actor, reason, Some(judgment.document.clone()))
        };
        let reasons = judgment.document["reasons"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let result = match judgment.verdict {
            Verdict::Pass => {
                let what = format!("stage {} of {} passed", r.stage + 1, r.spec.stages.len());
                self.advance(
                    &r,
                    next.clone(),
                    Some(judgment.document.clone()),
                    &by(what),
                    writer,
                )
                .await
            }
            Verdict::Fail => {
                let what = format!(
                    "stage {} failed{}, the treatment back to 0 %: {reasons}",
                    r.stage + 1,
                    if due { "" } else { " during its hold" }
                );
                self.fail(&r, &judgment.document, &by(what), writer).await
            }
            Verdict::Inconclusive | Verdict::NoData => {
                next.holds = r.holds + 1;
                next.last_verdict = Some(judgment.document.clone());
                next.stage_started_us = now_us();
                let (action, what) = if next.holds >= r.spec.max_holds {
                    next.state = State::Paused;
                    next.reason = format!(
                        "{} inconclusive verdicts in a row at stage {}: {reasons}; resume to judge it again",
                        next.holds,
                        r.stage + 1
                    );
                    ("rollout.pause", next.reason.clone())
                } else {
                    (
                        "rollout.hold",
                        format!(
                            "stage {} held ({} of {}): {reasons}",
                            r.stage + 1,
                            next.holds,
                            r.spec.max_holds
                        ),
                    )
                };
                self.save_only(&r, &next, &by(what), action, writer).await
            }
        };
        match result {
            // Someone changed the flag since the rollout's last write: hold
            // it there for a person to look at.
            Err(e)
                if e.kind() == ErrorKind::FailedPrecondition
                    && e.message().starts_with(CHANGED_BY_SOMEONE_ELSE) =>
            {
                let mut paused = r.clone();
                paused.version += 1;
                paused.updated_at_us = now_us();
                paused.state = State::Paused;
                paused.reason = e.message().to_owned();
                let by = Attribution::automatic(&actor, paused.reason.clone(), None);
                self.save_only(&r, &paused, &by, "rollout.pause", writer)
                    .await
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let mut ended = r.clone();
                ended.version += 1;
                ended.updated_at_us = now_us();
                ended.state = State::Aborted;
                ended.weight = 0;
                ended.reason = format!("ended: {}", e.message());
                let by = Attribution::automatic(&actor, ended.reason.clone(), None);
                self.save_only(&r, &ended, &by, "rollout.abort", writer)
                    .await
            }
            other => other,
        }
    }

    /// Fails rollout `r` and puts the flag back, at once, whatever happened
    /// to the flag meanwhile; a person's step in between (a pause) does not
    /// drop the FAIL: the row is read again and failed.
    async fn fail(
        &self,
        r: &Rollout,
        verdict: &Json,
        by: &Attribution,
        writer: Writer<'_>,
    ) -> Result<()> {
        let mut current = r.clone();
        for _ in 0..5 {
            if current.state.is_final() {
                return Ok(());
            }
            let mut next = current.clone();
            next.version += 1;
            next.updated_at_us = now_us();
            next.state = State::Failed;
            next.weight = 0;
            next.last_verdict = Some(verdict.clone());
            next.reason = by.reason.trim_start_matches("rollout ").to_owned();
            match self
                .step(&current, next, FlagStep::Restore, 0, by, writer)
                .await
            {
                Err(e)
                    if e.kind() == ErrorKind::FailedPrecondition
                        && e.message().contains(ROW_MOVED) =>
                {
                    current = store::get(&self.store, &r.id).await?;
                }
                other => return other,
            }
        }
        Err(Error::unavailable(
            "failing the rollout",
            "its row kept changing; tried again at the next tick",
        ))
    }

    /// Gives up this replica's leases (at shutdown): another replica takes
    /// its rollouts over at its next tick.
    pub async fn release(&self) {
        if let Err(e) = store::release(&self.store, &self.owner).await {
            tracing::warn!(error = %e, "giving up the rollouts' leases failed; they expire");
        }
    }

    /// Sets the rollouts' gauges from the database (every replica, for
    /// dashboards that do not know which one drives).
    pub async fn refresh_metrics(&self) {
        if let Ok(active) = store::recent(&self.store, now_us() - 600_000_000).await {
            for r in &active {
                metrics(r);
            }
        }
    }
}

/// Sets a rollout's gauges.
fn metrics(r: &Rollout) {
    let states: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
    crate::telemetry::metrics::rollout(
        &r.id,
        &r.spec.flag_key,
        f64::from(r.weight) / f64::from(TOTAL_WEIGHT),
        r.stage + 1,
        r.state.as_str(),
        &states,
    );
}

/// An upper bound of a rollout's encoded size, by which pages are cut.
fn size_bound(r: &Rollout) -> usize {
    let json = |v: &Option<Json>| v.as_ref().map_or(0, |v| v.to_string().len() * 2);
    1024 + serde_json::to_string(&r.spec).map_or(0, |s| s.len() * 2)
        + json(&r.last_verdict)
        + json(&r.baseline)
        + r.reason.len()
}

/// `by` with `what` added to its reason (a person's reason stays first).
fn with_reason(mut by: Attribution, what: &str) -> Attribution {
    by.reason = if by.reason.is_empty() {
        format!("rollout {what}")
    } else {
        format!("{} (rollout {what})", by.reason)
    };
    by
}

/// `stage 2 of 4 at 25 %`.
fn place(r: &Rollout) -> String {
    format!(
        "stage {} of {} at {} %",
        r.stage + 1,
        r.spec.stages.len(),
        percent_of(r.weight)
    )
}

/// What the audit log keeps of a rollout's own state.
fn summary(r: &Rollout) -> Json {
    json!({
        "rollout": r.id,
        "state": r.state.as_str(),
        "stage": r.stage + 1,
        "percent": percent_of(r.weight),
        "holds": r.holds,
    })
}

/// `n` random bytes in hex.
fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn check_id(id: &str) -> Result<()> {
    let ok =
        id.len() == 15 && id.starts_with("ro-") && id[3..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            "id",
            "is not a rollout id (ro- and 12 hex digits)",
        ))
    }
}

fn bad_token() -> Error {
    Error::invalid_argument("page_token", "is not a token returned by this server")
}
