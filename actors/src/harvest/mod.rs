//! Harvesting: walking a cloud's APIs and writing what they describe to the store.
//!
//! Owns: the harvest orchestration shared by every provider ([`run_harvest`]) and the
//! provider harvesters ([`aws`]). (Being written.)
//!
//! Must never: write a resource outside a batch transaction, or mark anything deleted for
//! a (type, region) whose harvest failed.

pub mod aws;
