//! The in-process bus: a tokio broadcast channel, for a single node.

use async_trait::async_trait;
use tokio::sync::broadcast;

use palisade_proto::ClusterEvent;

use super::{Bus, BusError};

/// Events published here reach this process's subscribers only.
pub struct MemoryBus {
    tx: broadcast::Sender<ClusterEvent>,
}

impl MemoryBus {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        MemoryBus { tx }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        MemoryBus::new(1024)
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, event: ClusterEvent) -> Result<(), BusError> {
        crate::metrics::inc("palisade_bus_events_total", &[("event", event.label())]);
        // No subscriber is not an error: events are notices, not commands.
        let _ = self.tx.send(event);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_proto::{JobId, JobPriority};

    #[tokio::test]
    async fn every_subscriber_sees_each_event() {
        let bus = MemoryBus::default();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        let ev = ClusterEvent::JobEnqueued {
            job: JobId("j".into()),
            priority: JobPriority::P0,
        };
        bus.publish(ev.clone()).await.expect("publish");
        assert_eq!(a.recv().await.expect("a"), ev);
        assert_eq!(b.recv().await.expect("b"), ev);
    }
}
