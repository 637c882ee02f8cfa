//! The bus port: typed cluster events, published to every node.
//!
//! Owns: the [`Bus`] trait, its in-process implementation ([`memory`]) and the cluster's
//! Redis pub/sub one ([`redis`]), which carries the same events in signed envelopes
//! (`palisade_proto::Envelope`) and drops forged, malformed, stale and replayed ones.
//!
//! Must never: be the only carrier of anything that must not be lost. Events are
//! wake-ups and notices; the queue and the store hold the truth.

pub mod memory;
pub mod redis;

use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::broadcast;

use palisade_proto::ClusterEvent;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    #[error("event not encodable: {0}")]
    Encode(String),
    #[error("bus misconfigured: {0}")]
    Config(String),
}

/// Publish/subscribe for cluster events.
///
/// Delivery is at most once and may lose events (a subscriber that lags, a Redis
/// connection that drops); what is delivered came from a node of this cluster (on the
/// clustered bus: signed with the cluster secret) and is delivered once.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Send an event to every subscriber on every node, this one included.
    /// [`BusError::Unavailable`] when the carrier cannot take it now.
    async fn publish(&self, event: ClusterEvent) -> Result<(), BusError>;
    /// Receive events from now on. A slow subscriber loses the oldest events; the
    /// receiver closes when the bus is dropped.
    fn subscribe(&self) -> broadcast::Receiver<ClusterEvent>;
}

pub type SharedBus = Arc<dyn Bus>;
