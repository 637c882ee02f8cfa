//! The cluster's shared view of its nodes: who is up, with which roles and load.
//!
//! Owns: the [`registry::NodeRegistry`] every node keeps from the heartbeats on the bus,
//! and the heartbeat loop that announces this node.
//!
//! Must never: be the truth about jobs (the queue is), or depend on a heartbeat arriving:
//! the bus loses messages, and a node that misses a few is only reported stale.

pub mod registry;
