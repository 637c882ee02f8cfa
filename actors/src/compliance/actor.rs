//! The compliance actor: evaluates insights when a worker asks it to.
//!
//! Owns: the compiled insight catalog's use; runs one evaluation at a time (they are
//! CPU-bound; two at once would only share the same cores).
//!
//! Must never: call a cloud API or touch the queue.

use actix::{Actor, AtomicResponse, Context, Handler, Message, WrapFuture};
use std::sync::Arc;

use palisade_proto::{CloudId, Timestamp};

use super::{run_compliance, Catalog, ComplianceError, ComplianceReport};
use crate::store::SharedStore;

/// Evaluate every insight over one cloud (or all). Sent by a worker; replies with the report.
#[derive(Message)]
#[rtype(result = "Result<ComplianceReport, ComplianceError>")]
pub struct RunCompliance {
    pub cloud: Option<CloudId>,
    pub now: Timestamp,
}

pub struct ComplianceActor {
    store: SharedStore,
    catalog: Arc<Catalog>,
    page_size: usize,
}

impl ComplianceActor {
    pub fn new(store: SharedStore, catalog: Arc<Catalog>, page_size: usize) -> Self {
        ComplianceActor {
            store,
            catalog,
            page_size,
        }
    }
}

impl Actor for ComplianceActor {
    type Context = Context<Self>;
}

impl Handler<RunCompliance> for ComplianceActor {
    // Atomic: the actor finishes one run before it takes the next message.
    type Result = AtomicResponse<Self, Result<ComplianceReport, ComplianceError>>;

    fn handle(&mut self, msg: RunCompliance, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let catalog = self.catalog.clone();
        let page_size = self.page_size;
        AtomicResponse::new(Box::pin(
            async move {
                run_compliance(
                    store.as_ref(),
                    &catalog,
                    msg.cloud.as_ref(),
                    msg.now,
                    page_size,
                )
                .await
            }
            .into_actor(self),
        ))
    }
}
