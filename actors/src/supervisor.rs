//! The supervisor: starts the role actors the configuration names, restarts a crashed one
//! with backoff, and drains the node on shutdown.
//!
//! Owns: the role actors' lifetimes, the node's shared ports (store, queue, bus), and the
//! shutdown sequence: stop taking jobs, let running jobs finish within the grace period,
//! stop the interface server.
//!
//! Must never: do a role's work itself, or exit the process (the daemon decides that).

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, ResponseActFuture,
    WrapFuture,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::redis::{RedisBus, RedisBusOptions};
use crate::bus::{memory::MemoryBus, SharedBus};
use crate::cluster::registry::{self, NodeRegistry};
use crate::compliance::actor::ComplianceActor;
use crate::compliance::Catalog;
use crate::crypto::CredentialsCipher;
use crate::harvest::actor::HarvesterActor;
use crate::harvest::aws::AwsHarvester;
use crate::harvest::HarvestContext;
use crate::http::actor::{HttpActor, StopServer};
use crate::queue::redis::{RedisQueue, RedisQueueOptions};
use crate::queue::{memory::MemoryQueue, SharedQueue};
use crate::scheduler::cadence::SchedulerActor;
use crate::scheduler::leader::LeaderLease;
use crate::scheduler::worker::{RunningJobs, WorkerActor, WorkerDeps};
use crate::scheduler::RoleAddrs;
use crate::settings::{Role, Settings};
use crate::store::SharedStore;
use palisade_proto::ClusterEvent;

/// How often the supervisor checks on its children.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// A child that stayed up this long gets its backoff reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("store.credentials_key: {0}")]
    CredentialsKey(#[from] crate::crypto::CryptoError),
    #[error("insights: {0}")]
    Insights(String),
    #[error("harvester: {0}")]
    Harvester(String),
    #[error("proxy configuration: {0}")]
    Proxy(String),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("queue: {0}")]
    Queue(#[from] crate::queue::QueueError),
    #[error("bus: {0}")]
    Bus(#[from] crate::bus::BusError),
    #[error("cluster: {0}")]
    Cluster(String),
}

/// Everything a node's actors share.
#[derive(Clone)]
pub struct NodeDeps {
    pub settings: Settings,
    pub node: String,
    pub store: SharedStore,
    pub queue: SharedQueue,
    pub bus: SharedBus,
    pub catalog: Arc<Catalog>,
    pub harvest: Arc<HarvestContext>,
    /// The cluster's nodes, from heartbeats on the bus.
    pub registry: Arc<NodeRegistry>,
    /// The scheduler leader lease, on a clustered node with the scheduler role.
    pub leader: Option<Arc<LeaderLease>>,
    /// Re-reads the configuration (set by the daemon, which knows its sources).
    pub reload: Option<Reload>,
}

/// Reloads the node's configuration: applies what can change while running and says what
/// (`Ok`) or why nothing changed (`Err`).
pub type Reload = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

impl NodeDeps {
    /// Build what the configuration names: the store at `store.url`, sealing credentials
    /// with the node's credentials key (see [`CredentialsCipher::for_store`]); with `redis.url`, the
    /// cluster's Redis queue and signed bus, else the in-process ones; the insight catalog
    /// and the harvesters. A store or Redis that cannot be reached is reported in one line
    /// per attempt and retried with backoff, for ever: the caller races this against the
    /// shutdown signal. Errors that waiting cannot cure (a bad url, a schema this build
    /// does not know) are returned.
    pub async fn connect(settings: &Settings, node: String) -> Result<NodeDeps, NodeError> {
        let store_url = settings.store.url.clone();
        let cipher = Arc::new(CredentialsCipher::for_store(&settings.store)?);
        tracing::info!(key = ?cipher.origin(), "cloud credentials are sealed at rest");
        let store = retry_while_unreachable(
            "store",
            &redacted(&store_url),
            || crate::store::open_with(&store_url, cipher.clone()),
            // a server may come back; a local file that cannot be opened will not
            |e| {
                store_url.starts_with("mysql://")
                    && matches!(e, crate::store::StoreError::Unavailable(_))
            },
        )
        .await?;
        let (queue, bus): (SharedQueue, SharedBus) = if settings.clustered() {
            let url = settings.redis.url.clone();
            let prefix = settings.redis.prefix.clone();
            let options = RedisQueueOptions {
                prefix: prefix.clone(),
                lease: Duration::from_secs(settings.queue.lease_secs),
                max_attempts: settings.queue.max_attempts,
                retry_backoff: Duration::from_secs(settings.queue.retry_backoff_secs),
                ..RedisQueueOptions::default()
            };
            let queue = retry_while_unreachable(
                "redis queue",
                &redacted(&url),
                || RedisQueue::connect(&url, options.clone()),
                |e| matches!(e, crate::queue::QueueError::Unavailable(_)),
            )
            .await?;
            let bus_options = RedisBusOptions::new(
                format!("{prefix}events"),
                node.clone(),
                settings.cluster.secret.as_bytes().to_vec(),
            );
            let bus = retry_while_unreachable(
                "redis bus",
                &redacted(&url),
                || RedisBus::connect(&url, bus_options.clone()),
                |e| matches!(e, crate::bus::BusError::Unavailable(_)),
            )
            .await?;
            (Arc::new(queue), Arc::new(bus))
        } else {
            (
                Arc::new(MemoryQueue::new(settings.scheduler.job_history)),
                Arc::new(MemoryBus::default()),
            )
        };
        let catalog = Catalog::builtin(&settings.compliance)
            .map_err(|e| NodeError::Insights(e.to_string()))?;
        // resources are written with what this catalog's insights read of them
        store.keep_facts(catalog.facts());
        store.cache_counts(settings.store.count_cache_entries);
        let proxy =
            crate::proxy::ProxyConfig::from_env().map_err(|e| NodeError::Proxy(e.to_string()))?;
        let aws = AwsHarvester::new(&settings.aws, proxy)
            .map_err(|e| NodeError::Harvester(e.to_string()))?;
        let harvest = Arc::new(HarvestContext {
            store: store.clone(),
            aws: Arc::new(aws),
            batch_size: settings.store.batch_size,
            concurrency: settings.aws.concurrency,
        });
        let leader = if settings.clustered() && settings.has_role(Role::Scheduler) {
            Some(Arc::new(
                LeaderLease::new(
                    &settings.redis.url,
                    &settings.redis.prefix,
                    &node,
                    Duration::from_secs(settings.cluster.leader_lease_secs),
                )
                .map_err(|e| NodeError::Cluster(e.to_string()))?,
            ))
        } else {
            None
        };
        Ok(NodeDeps {
            settings: settings.clone(),
            node,
            store,
            queue,
            bus,
            catalog: Arc::new(catalog),
            harvest,
            registry: Arc::new(NodeRegistry::new(Duration::from_secs(
                settings.cluster.heartbeat_secs,
            ))),
            leader,
            reload: None,
        })
    }
}

/// Act on the control events of the bus that concern this node, for ever: cancel a job
/// running here, drain this node (its workers finish their jobs and take no more; the
/// interface keeps serving), note a configuration reload request.
async fn obey(
    bus: SharedBus,
    node: String,
    jobs: RunningJobs,
    draining: Arc<AtomicBool>,
    drained: Arc<tokio::sync::Notify>,
    reload: Option<Reload>,
) {
    let mut events = bus.subscribe();
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "control listener lagged behind the bus");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let mine = |target: &Option<String>| target.as_deref().is_none_or(|t| t == node);
        match event {
            ClusterEvent::CancelJob { job } if jobs.cancel(&job) => {
                tracing::info!(job = %job, "cancelling a running job on request");
            }
            ClusterEvent::DrainNode { node: target }
                if mine(&target) && !draining.swap(true, Ordering::SeqCst) =>
            {
                drained.notify_waiters();
                tracing::info!("draining on request: running jobs finish, no new ones start");
                crate::metrics::inc("palisade_node_drains_total", &[]);
            }
            ClusterEvent::ReloadConfig { node: target } if mine(&target) => match &reload {
                Some(reload) => match reload() {
                    Ok(summary) => tracing::info!(summary, "configuration reloaded"),
                    Err(error) => tracing::warn!(
                        error,
                        "configuration reload refused; the running configuration stays"
                    ),
                },
                None => tracing::info!("configuration reload requested; nothing to reload"),
            },
            _ => {}
        }
    }
}

/// A url without its password, for logs.
fn redacted(url: &str) -> String {
    crate::store::mysql::redact_url(url)
}

/// Run `attempt` until it succeeds or fails with an error `retryable` does not accept;
/// each retryable failure is one warning line, then a backoff of 0.5 s doubling to 10 s.
async fn retry_while_unreachable<T, E, F, Fut>(
    what: &str,
    target: &str,
    mut attempt: F,
    retryable: impl Fn(&E) -> bool,
) -> Result<T, NodeError>
where
    E: std::fmt::Display + Into<NodeError>,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = Duration::from_millis(500);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) => {
                tracing::warn!(
                    what,
                    target,
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot reach {what}; retrying"
                );
                crate::metrics::inc("palisade_backend_unreachable_total", &[("backend", what)]);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChildKind {
    Harvester,
    Compliance,
    Worker,
    Scheduler,
}

impl ChildKind {
    fn name(self) -> &'static str {
        match self {
            ChildKind::Harvester => "harvester",
            ChildKind::Compliance => "compliance",
            ChildKind::Worker => "worker",
            ChildKind::Scheduler => "scheduler",
        }
    }
}

enum ChildAddr {
    Harvester(Addr<HarvesterActor>),
    Compliance(Addr<ComplianceActor>),
    Worker(Addr<WorkerActor>),
    Scheduler(Addr<SchedulerActor>),
}

impl ChildAddr {
    fn connected(&self) -> bool {
        match self {
            ChildAddr::Harvester(a) => a.connected(),
            ChildAddr::Compliance(a) => a.connected(),
            ChildAddr::Worker(a) => a.connected(),
            ChildAddr::Scheduler(a) => a.connected(),
        }
    }
}

struct Child {
    kind: ChildKind,
    addr: Option<ChildAddr>,
    started_at: Instant,
    backoff: Duration,
    /// When a dead child may be started again.
    restart_at: Option<Instant>,
    ever_started: bool,
    restarts: u32,
}

/// Drain the node: stop taking jobs, wait for running ones up to `grace`, stop serving.
/// Sent by the daemon on SIGTERM/SIGINT; replies once the node is quiet.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub grace: Duration,
}

/// How many times role actors were restarted. Sent by tests and the API; replies a count.
#[derive(Message)]
#[rtype(result = "u32")]
pub struct RestartCount;

pub struct Supervisor {
    deps: NodeDeps,
    roles: RoleAddrs,
    running: Arc<AtomicUsize>,
    draining: Arc<AtomicBool>,
    drained: Arc<tokio::sync::Notify>,
    running_jobs: RunningJobs,
    children: Vec<Child>,
    http: Option<Addr<HttpActor>>,
    server: Option<actix_web::dev::Server>,
}

impl Supervisor {
    /// A supervisor for the roles `deps.settings.node.roles` names; `server` is the bound
    /// interface server when this node has the interface role.
    pub fn new(deps: NodeDeps, server: Option<actix_web::dev::Server>) -> Self {
        let s = &deps.settings;
        let mut kinds = Vec::new();
        if s.has_role(Role::Worker) {
            kinds.extend([
                ChildKind::Harvester,
                ChildKind::Compliance,
                ChildKind::Worker,
            ]);
        }
        if s.has_role(Role::Scheduler) {
            kinds.push(ChildKind::Scheduler);
        }
        let initial = Duration::from_millis(s.supervisor.restart_backoff_initial_ms);
        let children = kinds
            .into_iter()
            .map(|kind| Child {
                kind,
                addr: None,
                started_at: Instant::now(),
                backoff: initial,
                restart_at: Some(Instant::now()),
                ever_started: false,
                restarts: 0,
            })
            .collect();
        Supervisor {
            deps,
            roles: RoleAddrs::default(),
            running: Arc::new(AtomicUsize::new(0)),
            draining: Arc::new(AtomicBool::new(false)),
            drained: Arc::new(tokio::sync::Notify::new()),
            running_jobs: RunningJobs::default(),
            children,
            http: None,
            server,
        }
    }

    /// Jobs running on this node now.
    pub fn running(&self) -> Arc<AtomicUsize> {
        self.running.clone()
    }

    fn start_child(&self, kind: ChildKind) -> ChildAddr {
        let d = &self.deps;
        match kind {
            ChildKind::Harvester => {
                let addr = HarvesterActor::new(d.harvest.clone()).start();
                self.roles.set_harvester(Some(addr.clone()));
                ChildAddr::Harvester(addr)
            }
            ChildKind::Compliance => {
                let addr = ComplianceActor::new(
                    d.store.clone(),
                    d.catalog.clone(),
                    d.settings.compliance.page_size,
                )
                .start();
                self.roles.set_compliance(Some(addr.clone()));
                ChildAddr::Compliance(addr)
            }
            ChildKind::Worker => {
                let deps = WorkerDeps {
                    node: d.node.clone(),
                    store: d.store.clone(),
                    queue: d.queue.clone(),
                    bus: d.bus.clone(),
                    roles: self.roles.clone(),
                    running: self.running.clone(),
                    draining: self.draining.clone(),
                    drained: self.drained.clone(),
                    running_jobs: self.running_jobs.clone(),
                };
                ChildAddr::Worker(WorkerActor::new(deps, d.settings.scheduler.workers).start())
            }
            ChildKind::Scheduler => ChildAddr::Scheduler(
                SchedulerActor::new(
                    d.store.clone(),
                    d.queue.clone(),
                    d.bus.clone(),
                    d.settings.scheduler.harvest_interval_secs,
                    d.settings.scheduler.compliance_interval_secs,
                    d.leader.clone(),
                )
                .start(),
            ),
        }
    }

    /// Start due children, notice dead ones and schedule their restart.
    fn watch(&mut self) {
        if self.draining.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let initial =
            Duration::from_millis(self.deps.settings.supervisor.restart_backoff_initial_ms);
        let max = Duration::from_millis(self.deps.settings.supervisor.restart_backoff_max_ms);
        for i in 0..self.children.len() {
            let kind = self.children[i].kind;
            let alive = self.children[i].addr.as_ref().map(ChildAddr::connected);
            match alive {
                Some(true) => {
                    let child = &mut self.children[i];
                    if now.duration_since(child.started_at) > STABLE_AFTER {
                        child.backoff = initial;
                    }
                }
                Some(false) => {
                    let child = &mut self.children[i];
                    child.addr = None;
                    child.restart_at = Some(now + child.backoff);
                    tracing::error!(
                        actor = kind.name(),
                        backoff_ms = child.backoff.as_millis() as u64,
                        "role actor crashed; restarting after backoff"
                    );
                    crate::metrics::inc("palisade_actor_crashes_total", &[("actor", kind.name())]);
                    child.backoff = (child.backoff * 2).min(max);
                    match kind {
                        ChildKind::Harvester => self.roles.set_harvester(None),
                        ChildKind::Compliance => self.roles.set_compliance(None),
                        _ => {}
                    }
                }
                None => {
                    if self.children[i].restart_at.is_some_and(|t| t <= now) {
                        let addr = self.start_child(kind);
                        let child = &mut self.children[i];
                        if child.ever_started {
                            child.restarts += 1;
                            tracing::info!(
                                actor = kind.name(),
                                restarts = child.restarts,
                                "role actor restarted"
                            );
                            crate::metrics::inc(
                                "palisade_actor_restarts_total",
                                &[("actor", kind.name())],
                            );
                        }
                        child.ever_started = true;
                        child.addr = Some(addr);
                        child.started_at = now;
                        child.restart_at = None;
                    }
                }
            }
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let roles: Vec<&str> = self
            .deps
            .settings
            .node
            .roles
            .iter()
            .map(|r| match r {
                Role::Scheduler => "scheduler",
                Role::Worker => "worker",
                Role::Interface => "interface",
            })
            .collect();
        tracing::info!(node = %self.deps.node, roles = ?roles, "supervisor started");
        let d = &self.deps;
        ctx.spawn(registry::listen(d.bus.clone(), d.registry.clone()).into_actor(self));
        ctx.spawn(
            registry::announce(
                d.bus.clone(),
                d.node.clone(),
                roles.iter().map(|r| r.to_string()).collect(),
                self.running.clone(),
                Duration::from_secs(d.settings.cluster.heartbeat_secs),
            )
            .into_actor(self),
        );
        ctx.spawn(
            obey(
                d.bus.clone(),
                d.node.clone(),
                self.running_jobs.clone(),
                self.draining.clone(),
                self.drained.clone(),
                d.reload.clone(),
            )
            .into_actor(self),
        );
        self.watch();
        if let Some(server) = self.server.take() {
            self.http = Some(HttpActor::new(server).start());
        }
        ctx.run_interval(WATCH_EVERY, |act, _| act.watch());
    }
}

impl Handler<RestartCount> for Supervisor {
    type Result = u32;

    fn handle(&mut self, _: RestartCount, _: &mut Self::Context) -> u32 {
        self.children.iter().map(|c| c.restarts).sum()
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.draining.store(true, Ordering::SeqCst);
        self.drained.notify_waiters();
        let queue = self.deps.queue.clone();
        let running = self.running.clone();
        let http = self.http.take();
        let fut = async move {
            queue.close().await;
            let deadline = Instant::now() + msg.grace;
            let busy = running.load(Ordering::SeqCst);
            tracing::info!(
                running_jobs = busy,
                grace_secs = msg.grace.as_secs(),
                "draining"
            );
            while running.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let left = running.load(Ordering::SeqCst);
            if left > 0 {
                tracing::warn!(
                    running_jobs = left,
                    "grace period over; abandoning running jobs"
                );
            }
            if let Some(http) = http {
                let _ = http.send(StopServer).await;
            }
        };
        Box::pin(fut.into_actor(self).map(|_, _, _| ()))
    }
}
