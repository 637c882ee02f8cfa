//! Palisade's domain and wire types.
//!
//! Owns: the nouns every other layer speaks (clouds, jobs, resources, findings,
//! cluster events) and the signed, versioned bincode envelope that carries events between
//! nodes.
//!
//! Must never: do I/O, depend on actix or tokio, or know how anything is stored. A type
//! that crosses the wire lives here and nowhere else.

pub mod cloud;
pub mod envelope;
pub mod event;
pub mod finding;
mod id;
pub mod job;
pub mod resource;

pub use cloud::{CloudAccount, CloudId, CloudView, Credentials, Provider};
pub use envelope::{Envelope, WireError, MAC_BYTES, MAX_ENVELOPE_BYTES, WIRE_VERSION};
pub use event::ClusterEvent;
pub use finding::{Finding, FindingState, InsightId, Severity};
pub use job::{HarvestScope, Job, JobId, JobKind, JobPriority, JobState, JobStatus};
pub use resource::{Resource, ResourceType, ResourceUid, Scope};

/// Wall-clock time as Palisade stores and sends it.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
