//! The bus port: typed cluster events, published to every node.
//!
//! Owns: the [`Bus`] trait and its in-process implementation ([`memory`]); the cluster's
//! Redis pub/sub implementation carries the same events in signed envelopes.
//!
//! Must never: be the only carrier of anything that must not be lost. Events are
//! wake-ups and notices; the queue and the store hold the truth.

pub mod memory;

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
}

/// Publish/subscribe for cluster events.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Send an event to every subscriber on every node, this one included.
    async fn publish(&self, event: ClusterEvent) -> Result<(), BusError>;
    /// Receive events from now on. A slow subscriber loses the oldest events.
    fn subscribe(&self) -> broadcast::Receiver<ClusterEvent>;
}

pub type SharedBus = Arc<dyn Bus>;
