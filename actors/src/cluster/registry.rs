//! The node registry: the nodes this node has heard from, fed by bus heartbeats.
//!
//! Owns: one entry per node id (roles, running jobs, last heartbeat), [`announce`] (this
//! node's heartbeat loop) and [`listen`] (the loop that records everyone's, this node's
//! included). A node not heard from for three heartbeat periods is `stale`; after thirty it
//! is forgotten.
//!
//! Must never: grow without bound (forgotten nodes are dropped), or fail a caller because
//! the bus is down (a failed heartbeat is logged and counted, and the loop goes on).

use chrono::Utc;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_proto::{ClusterEvent, Timestamp};

use crate::bus::SharedBus;

/// One node as the registry knows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeInfo {
    pub node: String,
    pub roles: Vec<String>,
    /// Jobs the node was running at its last heartbeat.
    pub running_jobs: u32,
    pub last_seen: Timestamp,
    /// Seconds since the last heartbeat.
    pub age_secs: f64,
    /// `up`, or `stale` when three heartbeats were missed.
    pub state: &'static str,
}

/// The nodes heard from, by id.
pub struct NodeRegistry {
    every: Duration,
    nodes: Mutex<BTreeMap<String, Heard>>,
}

/// A node's last heartbeat.
struct Heard {
    roles: Vec<String>,
    running_jobs: u32,
    at: Timestamp,
}

impl NodeRegistry {
    /// A registry for heartbeats sent every `every`.
    pub fn new(every: Duration) -> Self {
        NodeRegistry {
            every: every.max(Duration::from_millis(10)),
            nodes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Record a heartbeat received at `at`.
    pub fn record(&self, node: &str, roles: Vec<String>, running_jobs: u32, at: Timestamp) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.insert(
            node.to_string(),
            Heard {
                roles,
                running_jobs,
                at,
            },
        );
    }

    /// The nodes known at `now`, by id; forgets those silent for thirty periods.
    pub fn nodes(&self, now: Timestamp) -> Vec<NodeInfo> {
        let period = self.every.as_secs_f64();
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.retain(|_, h| secs_between(h.at, now) < period * 30.0);
        nodes
            .iter()
            .map(|(node, h)| {
                let age = secs_between(h.at, now);
                NodeInfo {
                    node: node.clone(),
                    roles: h.roles.clone(),
                    running_jobs: h.running_jobs,
                    last_seen: h.at,
                    age_secs: age,
                    state: if age > period * 3.0 { "stale" } else { "up" },
                }
            })
            .collect()
    }
}

fn secs_between(a: Timestamp, b: Timestamp) -> f64 {
    (b - a).num_milliseconds().max(0) as f64 / 1000.0
}

/// Publish this node's heartbeat every `every`, for ever (spawn it; abort to stop).
pub async fn announce(
    bus: SharedBus,
    node: String,
    roles: Vec<String>,
    running: Arc<AtomicUsize>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let event = ClusterEvent::Heartbeat {
            node: node.clone(),
            roles: roles.clone(),
            running_jobs: u32::try_from(running.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
        };
        if let Err(e) = bus.publish(event).await {
            crate::metrics::inc("palisade_heartbeat_errors_total", &[]);
            tracing::warn!(error = %e, "heartbeat not sent");
        }
    }
}

/// Record every heartbeat on the bus in `registry`, for ever (spawn it; abort to stop).
pub async fn listen(bus: SharedBus, registry: Arc<NodeRegistry>) {
    let mut events = bus.subscribe();
    loop {
        match events.recv().await {
            Ok(ClusterEvent::Heartbeat {
                node,
                roles,
                running_jobs,
            }) => registry.record(&node, roles, running_jobs, Utc::now()),
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::debug!(missed = n, "registry lagged behind the bus");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::MemoryBus;
    use chrono::Duration as Span;

    #[test]
    fn nodes_go_stale_then_are_forgotten() {
        let r = NodeRegistry::new(Duration::from_secs(5));
        let t0 = Utc::now();
        r.record("a", vec!["worker".into()], 2, t0);
        r.record("b", vec!["interface".into()], 0, t0 - Span::seconds(20));
        r.record("c", vec!["scheduler".into()], 0, t0 - Span::seconds(200));
        let nodes = r.nodes(t0);
        let states: Vec<(&str, &str)> = nodes.iter().map(|n| (n.node.as_str(), n.state)).collect();
        assert_eq!(states, [("a", "up"), ("b", "stale")]);
        assert_eq!(nodes[0].running_jobs, 2);
        assert_eq!(nodes[0].roles, ["worker"]);
        // a new heartbeat brings a node back up
        r.record("b", vec!["interface".into()], 1, t0);
        assert!(r.nodes(t0).iter().all(|n| n.state == "up"));
    }

    #[tokio::test]
    async fn heartbeats_on_the_bus_fill_the_registry() {
        let bus: SharedBus = Arc::new(MemoryBus::default());
        let registry = Arc::new(NodeRegistry::new(Duration::from_millis(20)));
        let listener = tokio::spawn(listen(bus.clone(), registry.clone()));
        let running = Arc::new(AtomicUsize::new(3));
        let heart = tokio::spawn(announce(
            bus.clone(),
            "node-1".into(),
            vec!["worker".into(), "interface".into()],
            running,
            Duration::from_millis(20),
        ));
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen = registry.nodes(Utc::now());
            if !seen.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        heart.abort();
        listener.abort();
        assert_eq!(seen.len(), 1, "the node announced itself");
        assert_eq!(seen[0].node, "node-1");
        assert_eq!(seen[0].running_jobs, 3);
        assert_eq!(seen[0].state, "up");
    }
}
