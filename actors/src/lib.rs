//! Palisade's actors and the adapters they stand on.
//!
//! Owns: every piece of Palisade that does I/O or runs concurrently: the supervisor and
//! its role actors (scheduler, harvesters, compliance, HTTP), and the ports they use
//! (store, queue, bus) with their embedded implementations.
//!
//! Must never: parse command lines or read configuration files (that is `daemon`'s job),
//! or let a type that is not in `palisade-proto` cross a node boundary.

pub mod auth;
pub mod bus;
pub mod cluster;
pub mod compliance;
pub mod crypto;
pub mod harvest;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod queue;
pub mod scheduler;
pub mod settings;
pub mod store;
pub mod supervisor;

/// Every Palisade binary (the daemon, the benches, the tests) allocates through mimalloc: a
/// compliance run and an API answer make many short-lived strings and JSON values, which
/// glibc's allocator serves markedly slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
