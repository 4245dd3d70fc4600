//! `switchyard.v1.RolloutService`: converts, calls `rollout::RolloutService`,
//! converts.

use tonic::{Request, Response, Status};

use super::status::OrStatus;
use super::{
    convert::{page, timestamp, to_proto},
    gating::{rules_from_proto, rules_to_proto},
    principal,
};
use switchyard_api::v1::{rollout_service_server, *};
use switchyard_core::{
    error::{Error, Result},
    rollout::{
        Action, RolloutService,
        model::{self as d, percent_of, weight_of},
    },
};

/// The RolloutService implementation.
#[derive(Debug, Clone)]
pub struct RolloutApi {
    rollouts: RolloutService,
}

impl RolloutApi {
    /// Creates the service over the rollouts' use cases.
    pub fn new(rollouts: RolloutService) -> Self {
        RolloutApi { rollouts }
    }
}

/// A plan from its message: defaults filled in, each field checked where it
/// is read (the service checks the rest).
fn spec(r: Option<Rollout>) -> Result<d::Spec> {
    let r = r.ok_or_else(|| Error::invalid_argument("rollout", "is required"))?;
    let unit = match RolloutUnit::try_from(r.unit) {
        Ok(RolloutUnit::Unspecified | RolloutUnit::TargetingKey) => d::Unit::TargetingKey,
        Ok(RolloutUnit::Tenant) => d::Unit::Tenant,
        Err(_) => {
            return Err(Error::invalid_argument(
                "rollout.unit",
                format!("{} is not a unit", r.unit),
            ));
        }
    };
    let stages =
        r.stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let field = format!("rollout.stages[{i}]");
                let hold = s.hold.as_ref().ok_or_else(|| {
                    Error::invalid_argument(&format!("{field}.hold"), "is required")
                })?;
                let hold_s = u64::try_from(hold.seconds)
                    .ok()
                    .filter(|_| hold.nanos == 0)
                    .ok_or_else(|| {
                        Error::invalid_argument(
                            &format!("{field}.hold"),
                            "must be a whole number of seconds, at least one",
                        )
                    })?;
                Ok(d::Stage {
                    weight: weight_of(&format!("{field}.percent"), s.percent)?,
                    hold_s,
                    min_samples: if s.min_samples == 0 {
                        200
                    } else {
                        s.min_samples
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
    let defaults = d::Queries::default();
    let q = r.queries.unwrap_or_default();
    let or = |given: String, default: String| {
        if given.trim().is_empty() {
            default
        } else {
            given
        }
    };
    Ok(d::Spec {
        flag_key: r.flag_key,
        treatment: r.treatment,
        control: r.control,
        unit,
        tenants: r.tenants,
        stages,
        queries: d::Queries {
            requests: or(q.requests, defaults.requests),
            errors: or(q.errors, defaults.errors),
            p95_ms: or(q.p95_ms, defaults.p95_ms),
            matchers: q.matchers,
        },
        rules: rules_from_proto(r.rules.as_ref()).resolve(),
        max_holds: match r.max_holds {
            0 => 3,
            n => u32::try_from(n).unwrap_or(0),
        },
        check_every_s: match &r.check_interval {
            None => 0,
            Some(d) => u64::try_from(d.seconds)
                .ok()
                .filter(|s| d.nanos == 0 && *s > 0)
                .ok_or_else(|| {
                    Error::invalid_argument(
                        "rollout.check_interval",
                        "must be a whole number of seconds, at least one",
                    )
                })?,
        },
        flag_created_us: 0,
        otherwise: None,
    })
}

fn state_to_proto(s: d::State) -> RolloutState {
    match s {
        d::State::Running => RolloutState::Running,
        d::State::Paused => RolloutState::Paused,
        d::State::Succeeded => RolloutState::Succeeded,
        d::State::Failed => RolloutState::Failed,
        d::State::Aborted => RolloutState::Aborted,
    }
}

/// A rollout's message.
pub fn to_message(r: &d::Rollout) -> Rollout {
    let struct_of = |v: &serde_json::Value| match to_proto(v).kind {
        Some(pbjson_types::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    };
    let hold_us = i64::try_from(r.current().hold_s).unwrap_or(0) * 1_000_000;
    Rollout {
        id: r.id.clone(),
        flag_key: r.spec.flag_key.clone(),
        treatment: r.spec.treatment.clone(),
        control: r.spec.control.clone(),
        unit: match r.spec.unit {
            d::Unit::TargetingKey => RolloutUnit::TargetingKey,
            d::Unit::Tenant => RolloutUnit::Tenant,
        } as i32,
        tenants: r.spec.tenants.clone(),
        stages: r
            .spec
            .stages
            .iter()
            .map(|s| RolloutStage {
                percent: percent_of(s.weight),
                hold: Some(pbjson_types::Duration {
                    seconds: i64::try_from(s.hold_s).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                min_samples: s.min_samples,
            })
            .collect(),
        queries: Some(RolloutQueries {
            requests: r.spec.queries.requests.clone(),
            errors: r.spec.queries.errors.clone(),
            p95_ms: r.spec.queries.p95_ms.clone(),
            matchers: r.spec.queries.matchers.clone(),
        }),
        rules: Some(rules_to_proto(&r.spec.rules)),
        max_holds: i32::try_from(r.spec.max_holds).unwrap_or(i32::MAX),
        check_interval: Some(pbjson_types::Duration {
            seconds: r.check_every_us() / 1_000_000,
            nanos: 0,
        }),
        state: state_to_proto(r.state) as i32,
        stage: i32::try_from(r.stage + 1).unwrap_or(i32::MAX),
        percent: percent_of(r.weight),
        stage_start_time: Some(timestamp(r.stage_started_us)),
        next_judgment_time: (r.state == d::State::Running)
            .then(|| timestamp(r.stage_started_us.saturating_add(hold_us))),
        holds: i32::try_from(r.holds).unwrap_or(i32::MAX),
        flag_revision: r.flag_revision,
        last_verdict: r.last_verdict.as_ref().and_then(struct_of),
        reason: r.reason.clone(),
        created_by: r.created_by.clone(),
        create_time: Some(timestamp(r.created_at_us)),
        update_time: Some(timestamp(r.updated_at_us)),
    }
}

impl RolloutApi {
    async fn act<T>(&self, req: Request<T>, id: &str, action: Action) -> Result<Rollout, Status> {
        let r = self
            .rollouts
            .act(principal(&req)?, id, action)
            .await
            .or_status()?;
        Ok(to_message(&r))
    }
}

#[tonic::async_trait]
impl rollout_service_server::RolloutService for RolloutApi {
    async fn start_rollout(
        &self,
        req: Request<StartRolloutRequest>,
    ) -> Result<Response<StartRolloutResponse>, Status> {
        let p = principal(&req)?.clone();
        let r = self
            .rollouts
            .start(&p, spec(req.into_inner().rollout))
            .await
            .or_status()?;
        Ok(Response::new(StartRolloutResponse {
            rollout: Some(to_message(&r)),
        }))
    }

    async fn get_rollout(
        &self,
        req: Request<GetRolloutRequest>,
    ) -> Result<Response<GetRolloutResponse>, Status> {
        let r = self
            .rollouts
            .get(principal(&req)?, &req.get_ref().id)
            .await
            .or_status()?;
        Ok(Response::new(GetRolloutResponse {
            rollout: Some(to_message(&r)),
        }))
    }

    async fn list_rollouts(
        &self,
        req: Request<ListRolloutsRequest>,
    ) -> Result<Response<ListRolloutsResponse>, Status> {
        let r = req.get_ref();
        let flag = (!r.flag_key.is_empty()).then_some(r.flag_key.as_str());
        let page = self
            .rollouts
            .list(principal(&req)?, flag, &page(r.page_size, &r.page_token))
            .await
            .or_status()?;
        Ok(Response::new(ListRolloutsResponse {
            rollouts: page.items.iter().map(to_message).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn pause_rollout(
        &self,
        req: Request<PauseRolloutRequest>,
    ) -> Result<Response<PauseRolloutResponse>, Status> {
        let id = req.get_ref().id.clone();
        let rollout = self.act(req, &id, Action::Pause).await?;
        Ok(Response::new(PauseRolloutResponse {
            rollout: Some(rollout),
        }))
    }

    async fn resume_rollout(
        &self,
        req: Request<ResumeRolloutRequest>,
    ) -> Result<Response<ResumeRolloutResponse>, Status> {
        let id = req.get_ref().id.clone();
        let rollout = self.act(req, &id, Action::Resume).await?;
        Ok(Response::new(ResumeRolloutResponse {
            rollout: Some(rollout),
        }))
    }

    async fn abort_rollout(
        &self,
        req: Request<AbortRolloutRequest>,
    ) -> Result<Response<AbortRolloutResponse>, Status> {
        let id = req.get_ref().id.clone();
        let rollout = self.act(req, &id, Action::Abort).await?;
        Ok(Response::new(AbortRolloutResponse {
            rollout: Some(rollout),
        }))
    }

    async fn skip_stage(
        &self,
        req: Request<SkipStageRequest>,
    ) -> Result<Response<SkipStageResponse>, Status> {
        let id = req.get_ref().id.clone();
        let rollout = self.act(req, &id, Action::Skip).await?;
        Ok(Response::new(SkipStageResponse {
            rollout: Some(rollout),
        }))
    }

    async fn kill_rollout(
        &self,
        req: Request<KillRolloutRequest>,
    ) -> Result<Response<KillRolloutResponse>, Status> {
        let id = req.get_ref().id.clone();
        let rollout = self.act(req, &id, Action::Kill).await?;
        Ok(Response::new(KillRolloutResponse {
            rollout: Some(rollout),
        }))
    }
}
