//! The harvester actor: one per cloud provider, running harvest jobs it is sent.
//!
//! Owns: nothing but a handle on the shared [`HarvestContext`]; a panic inside a harvest
//! kills this actor (and fails the jobs it was running), never the daemon: the supervisor
//! restarts it with backoff.
//!
//! Must never: touch the queue (the worker that sent the job acknowledges it).

use actix::{Actor, Context, Handler, Message, ResponseActFuture, WrapFuture};
use std::sync::Arc;

use palisade_proto::{CloudAccount, HarvestScope, JobId, Timestamp};

use super::{run_harvest, HarvestContext, HarvestError, HarvestReport};

/// Harvest one scope of one cloud. Sent by a worker; the reply is the harvest's report.
#[derive(Message)]
#[rtype(result = "Result<HarvestReport, HarvestError>")]
pub struct RunHarvest {
    pub job: JobId,
    pub cloud: CloudAccount,
    pub scope: HarvestScope,
    pub at: Timestamp,
    /// Notified to cancel the harvest: it stops where it is (the batches it stored stay;
    /// nothing is marked deleted) and answers `HarvestError::Cancelled`.
    pub cancel: Arc<tokio::sync::Notify>,
}

/// Runs harvests for one provider; many at once, each a future spawned in this actor's own
/// context, so that a panic in one crashes the actor (failing its in-flight jobs) and the
/// supervisor's restart gives the next jobs a fresh harvester.
pub struct HarvesterActor {
    ctx: Arc<HarvestContext>,
}

impl HarvesterActor {
    pub fn new(ctx: Arc<HarvestContext>) -> Self {
        HarvesterActor { ctx }
    }
}

impl Actor for HarvesterActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        tracing::debug!("harvester started");
    }
}

impl Handler<RunHarvest> for HarvesterActor {
    type Result = ResponseActFuture<Self, Result<HarvestReport, HarvestError>>;

    fn handle(&mut self, msg: RunHarvest, _: &mut Self::Context) -> Self::Result {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            let cloud_id = msg.cloud.id.clone();
            let job = msg.job.clone();
            let progress = move |done: usize, total: usize, resources: u64| {
                tracing::info!(job = %job, cloud = %cloud_id, done, total, resources, "harvest progress");
            };
            tokio::select! {
                report = run_harvest(&ctx, &msg.cloud, &msg.scope, msg.at, &progress) => report,
                () = msg.cancel.notified() => {
                    tracing::info!(job = %msg.job, "harvest cancelled");
                    Err(HarvestError::Cancelled)
                }
            }
        }
        .into_actor(self))
    }
}
