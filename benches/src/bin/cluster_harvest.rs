//! Cluster harvest benchmark: the same moto estate harvested by a cluster with 1 and then
//! with 2 worker nodes, through the scheduler's recurring path (one p2 job per (cloud,
//! region, resource type), which spreads over the workers).
//!
//! Owns: its own moto server (a free loopback port, killed at the end), seeded once with
//! `integration/estate.py` (regions us-east-1 and eu-west-1, `--scale N`, 2000 by default:
//! about 10,000 resources); one run of `benches/walk.py` (the sequential boto3 walk) for
//! moto's own request rate; and per run (1 worker, then 2): a scratch MySQL database
//! (`palisade_bench_<pid>_<n>`, `palisade migrate`d, dropped at the end), a Redis key prefix
//! (`palisade-bench-<pid>-<n>:`, its keys deleted at the end), one `scheduler,interface`
//! node and N `worker` nodes of the release `palisade` (`cargo build --release -p palisade`
//! first), each worker with `scheduler.workers` = 4 and `aws.requests_per_second` = 100000
//! (the default token bucket would measure the limiter, not the cluster). Recurring
//! harvests every 3600 s (each job is queued once, right after the cloud is added),
//! recurring compliance off (each stored harvest still queues its p1 compliance run, as in
//! production).
//!
//! Measures, per run, from `POST /v2/clouds` until every recurring harvest job is done, the
//! inventory total (`GET /v2/resources?limit=1`) equals the seeded total and the queue is
//! idle (`GET /v2/jobs/queues`): wall time, resources/s, the harvest phase alone (until the
//! last harvest job's "job done" log line), API calls/s (the `api_calls` counts of the
//! harvest jobs, `GET /v2/jobs/{id}`), the jobs each worker ran (its "job done" lines), and
//! the longest job (one (region, type) unit, which no number of workers splits); then the
//! speed-up of 2 workers over 1, and whether 1 worker already ran at moto's rate (the best
//! rate the bench saw moto serve: the walk, a run, or a job of 1 s or more), in which case
//! moto, not the cluster, bounds the speed-up.
//!
//! `PALISADE__*` variables in the bench's environment are passed on to every node after the
//! bench's own. Node logs (JSON) are kept under `target/bench-data/cluster-harvest/`.
//!
//! Must never: assert or exit non-zero on a figure (it prints figures), or leave a moto or
//! palisade process, a scratch database or a prefix's Redis keys behind.
//!
//! Usage: `cargo run --release -p palisade-benches --bin cluster_harvest -- [--scale N]
//! [--endpoint URL --total N (an already seeded moto holding N resources; no seeding)]`.
//! MySQL: root without a password on 127.0.0.1:3306 (the `mysql` client); Redis:
//! `PALISADE_BENCH_REDIS_URL`, default `redis://127.0.0.1:6379`.
#![allow(clippy::print_stdout)] // a load generator's output is its figures

use palisade_benches::{
    free_port, redis_cli, seed, walk_json, Moto, Reaped, Workspace, REGIONS, SCRUBBED_ENV,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use palisade_proto::{Provider, ResourceType, Scope};

/// The bootstrap (admin) API key every node starts with and the bench calls with.
const API_KEY: &str = "bench-admin-api-key-0123456789";

const DEFAULT_SCALE: u64 = 2000;
const WORKER_COUNTS: [usize; 2] = [1, 2];
const POLL: Duration = Duration::from_millis(100);
/// A run that has not finished after this long is abandoned (a hang, not a figure).
const RUN_LIMIT: Duration = Duration::from_secs(1800);
const MYSQL_HOST: &str = "127.0.0.1";
const MYSQL_PORT: &str = "3306";
/// The bench's own cluster key (HMAC of bus messages between its nodes).
const CLUSTER_SECRET: &str = "cluster-harvest-bench-secret-0123";
/// 1 worker at or above this share of the walk's calls/s is "at moto's rate".
const AT_MOTO_SHARE: f64 = 0.8;

struct Args {
    scale: u64,
    endpoint: Option<String>,
    total: Option<u64>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        scale: DEFAULT_SCALE,
        endpoint: None,
        total: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--scale" => args.scale = value()?.parse().context("--scale takes a number")?,
            "--endpoint" => args.endpoint = Some(value()?),
            "--total" => args.total = Some(value()?.parse().context("--total takes a number")?),
            other => bail!("unknown argument {other} (--scale N, --endpoint URL --total N)"),
        }
    }
    if args.endpoint.is_some() != args.total.is_some() {
        bail!("--endpoint and --total go together");
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let workspace = Workspace::locate();
    let palisade = workspace.release_daemon()?;
    let Workspace { root, target } = workspace;
    let redis = std::env::var("PALISADE_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let logs = target.join("bench-data/cluster-harvest");
    std::fs::create_dir_all(&logs)?;

    let (_moto, endpoint, total) = match (&args.endpoint, args.total) {
        (Some(url), Some(total)) => {
            println!("using the seeded moto at {url} ({total} resources)");
            (None, url.clone(), total)
        }
        _ => {
            let moto = Moto::start()?;
            let endpoint = moto.endpoint();
            let started = Instant::now();
            let expected = seed(&root, &endpoint, args.scale)?;
            let total: u64 = expected.values().sum();
            println!(
                "seeded {total} resources (scale {}) in {:.1} s",
                args.scale,
                started.elapsed().as_secs_f64()
            );
            (Some(moto), endpoint, total)
        }
    };
    let walk = walk(&root, &endpoint)?;
    println!(
        "moto's rate, sequential walk: {} calls in {:.2} s = {:.0} calls/s",
        walk.calls,
        walk.seconds,
        walk.calls_per_sec()
    );
    let jobs = recurring_harvest_jobs();
    println!(
        "{jobs} recurring harvest jobs per cloud ({} regions); redis {}; {} cores",
        REGIONS.len(),
        palisade_actors::queue::redis::redact_url(&redis),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut runs = Vec::new();
    for workers in WORKER_COUNTS {
        let setup = RunSetup {
            palisade: &palisade,
            endpoint: &endpoint,
            redis: &redis,
            logs: &logs,
            workers,
            total,
            jobs,
        };
        println!("\nrun: 1 scheduler,interface node + {workers} worker node(s)");
        let run = run_cluster(&setup)?;
        println!(
            "  done: {:.2} s to idle, {} resources, {} jobs done, {} failed",
            run.wall_secs,
            run.resources,
            run.nodes.iter().map(|n| n.done()).sum::<u64>(),
            run.nodes.iter().map(|n| n.failed).sum::<u64>()
        );
        runs.push(run);
    }
    report(&walk, total, &runs);
    println!("node logs: {}", logs.display());
    Ok(())
}

/// The recurring harvest jobs of one AWS cloud in [`REGIONS`]: one per regional type and
/// region, one per global type (as the scheduler's `recurring_harvests` makes them).
fn recurring_harvest_jobs() -> u64 {
    ResourceType::of_provider(Provider::Aws)
        .map(|t| match t.scope() {
            Scope::Regional => REGIONS.len() as u64,
            Scope::Global => 1,
        })
        .sum()
}

/// What `walk.py` printed that this bench uses.
struct Walk {
    calls: u64,
    seconds: f64,
}

impl Walk {
    fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.seconds.max(1e-9)
    }
}

fn walk(root: &Path, endpoint: &str) -> Result<Walk> {
    let v = walk_json(root, endpoint)?;
    Ok(Walk {
        calls: v["calls"].as_u64().context("walk calls")?,
        seconds: v["seconds"].as_f64().context("walk seconds")?,
    })
}

/// Run one SQL statement as root on the bench's MariaDB.
fn mysql(sql: &str) -> Result<()> {
    let out = Command::new("mysql")
        .args(["-h", MYSQL_HOST, "-P", MYSQL_PORT, "-u", "root", "-e", sql])
        .output()
        .context("run the mysql client (is mariadb-client installed?)")?;
    if !out.status.success() {
        bail!(
            "mysql {sql:?} failed (is MariaDB running on {MYSQL_HOST}:{MYSQL_PORT}?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A database of the run's own, dropped on drop.
struct ScratchDb {
    name: String,
}

impl ScratchDb {
    fn create(name: String) -> Result<ScratchDb> {
        mysql(&format!("CREATE DATABASE {name}"))?;
        Ok(ScratchDb { name })
    }

    fn url(&self) -> String {
        format!("mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{}", self.name)
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Err(e) = mysql(&format!("DROP DATABASE IF EXISTS {}", self.name)) {
            println!("warning: scratch database {} not dropped: {e}", self.name);
        }
    }
}

/// A Redis key prefix of the run's own; its keys are deleted on drop.
struct RedisPrefix {
    url: String,
    prefix: String,
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        match delete_keys(&self.url, &self.prefix) {
            Ok(n) => println!("  cleaned up {n} redis keys under {}", self.prefix),
            Err(e) => println!("warning: redis keys under {} not deleted: {e}", self.prefix),
        }
    }
}

/// Delete every key under `prefix`; returns how many there were.
fn delete_keys(url: &str, prefix: &str) -> Result<usize> {
    let out = redis_cli(url)
        .args(["--scan", "--pattern", &format!("{prefix}*")])
        .output()
        .context("run redis-cli --scan")?;
    if !out.status.success() {
        bail!("redis-cli --scan failed");
    }
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for chunk in keys.chunks(500) {
        let status = redis_cli(url)
            .arg("DEL")
            .args(chunk)
            .stdout(Stdio::null())
            .status()
            .context("run redis-cli DEL")?;
        if !status.success() {
            bail!("redis-cli DEL failed");
        }
    }
    Ok(keys.len())
}

/// `PALISADE__*` variables of the bench's environment, passed on to every node.
fn overrides() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("PALISADE__"))
        .collect()
}

/// A `palisade` command with a scrubbed environment (nothing of the caller's `PALISADE__*`,
/// proxies or AWS settings).
fn palisade_command(palisade: &Path) -> Command {
    let mut cmd = Command::new(palisade);
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    for (k, _) in std::env::vars() {
        if k.starts_with("PALISADE__") || k.starts_with("AWS_ENDPOINT_URL") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// One `palisade run` node: its process (killed on drop), port, data directory and log.
struct Node {
    name: String,
    process: Option<Reaped>,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl Node {
    fn start(palisade: &Path, name: &str, env: &[(String, String)], log: PathBuf) -> Result<Node> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "palisade-cluster-bench-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let log_file = std::fs::File::create(&log).context("node log file")?;
        let mut cmd = palisade_command(palisade);
        cmd.arg("run")
            .current_dir(&dir)
            .env("PALISADE__HTTP__BIND", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .envs(overrides())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", palisade.display()))?;
        Ok(Node {
            name: name.to_string(),
            process: Some(Reaped(child)),
            port,
            dir,
            log,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log shows `line`; fails when the process exits first.
    fn wait_for_log(&mut self, line: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !self.logs().contains(line) {
            if let Some(Reaped(child)) = self.process.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "{} exited early ({status}); see {}",
                        self.name,
                        self.log.display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} never logged {line:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    fn get(&self, path: &str) -> Result<Value> {
        ureq::get(&self.url(path))
            .set("Api-Key", API_KEY)
            .timeout(Duration::from_secs(10))
            .call()
            .with_context(|| format!("GET {path} on {}", self.name))?
            .into_json()
            .with_context(|| format!("GET {path}: not JSON"))
    }

    /// SIGTERM, a few seconds to drain, then SIGKILL (on drop).
    fn stop(&mut self) {
        if let Some(Reaped(child)) = self.process.as_mut() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        self.process = None;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.process = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one run needs.
struct RunSetup<'a> {
    palisade: &'a Path,
    endpoint: &'a str,
    redis: &'a str,
    logs: &'a Path,
    workers: usize,
    /// Resources the seeded estate holds.
    total: u64,
    /// Recurring harvest jobs the scheduler queues for the cloud.
    jobs: u64,
}

/// One worker's share of a run, read from its log.
#[derive(Default)]
struct NodeWork {
    name: String,
    /// Ids of the harvest jobs it finished.
    harvests: Vec<String>,
    compliance: u64,
    failed: u64,
    /// The last harvest "job done" line's time.
    last_harvest: Option<DateTime<Utc>>,
}

impl NodeWork {
    fn done(&self) -> u64 {
        self.harvests.len() as u64 + self.compliance
    }

    /// Read a node's JSON log lines.
    fn read(name: &str, log: &str) -> NodeWork {
        let mut w = NodeWork {
            name: name.to_string(),
            ..NodeWork::default()
        };
        for line in log.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let at = v["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            match v["message"].as_str() {
                Some("job done") if v["kind"] == "harvest" => {
                    w.harvests
                        .push(v["job"].as_str().unwrap_or_default().to_string());
                    w.last_harvest = w.last_harvest.max(at);
                }
                Some("job done") => w.compliance += 1,
                Some("job failed") => w.failed += 1,
                _ => {}
            }
        }
        w
    }
}

/// One finished harvest job, from `GET /v2/jobs/{id}`.
#[derive(Clone, Default)]
struct HarvestJob {
    /// `type region` (or `type` for a global type).
    unit: String,
    api_calls: u64,
    /// started_at → finished_at.
    secs: f64,
}

impl HarvestJob {
    fn fetch(api: &Node, id: &str) -> Result<HarvestJob> {
        let v = api.get(&format!("/v2/jobs/{id}"))?;
        let list = |k: &str| -> Vec<String> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let at = |k: &str| {
            v[k].as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        };
        let secs = match (at("started_at"), at("finished_at")) {
            (Some(s), Some(f)) => (f - s).num_microseconds().unwrap_or(0) as f64 / 1e6,
            _ => 0.0,
        };
        Ok(HarvestJob {
            unit: [list("types"), list("regions")].concat().join(" "),
            api_calls: v["counts"]["api_calls"].as_u64().unwrap_or(0),
            secs,
        })
    }

    fn calls_per_sec(&self) -> f64 {
        self.api_calls as f64 / self.secs.max(1e-9)
    }
}

/// One run's figures.
struct Run {
    workers: usize,
    /// POST /v2/clouds → harvests done, inventory complete, queue idle.
    wall_secs: f64,
    /// POST /v2/clouds → the last harvest job's "job done".
    harvest_secs: f64,
    resources: u64,
    dead_letter: u64,
    nodes: Vec<NodeWork>,
    jobs: Vec<HarvestJob>,
}

impl Run {
    fn api_calls(&self) -> u64 {
        self.jobs.iter().map(|j| j.api_calls).sum()
    }

    fn calls_per_sec(&self) -> f64 {
        self.api_calls() as f64 / self.harvest_secs.max(1e-9)
    }

    /// The harvest job that ran longest: the run's critical path.
    fn longest(&self) -> HarvestJob {
        self.jobs
            .iter()
            .max_by(|a, b| a.secs.total_cmp(&b.secs))
            .cloned()
            .unwrap_or_default()
    }
}

/// The environment of one node of the run's cluster.
fn node_env(
    setup: &RunSetup<'_>,
    db: &ScratchDb,
    prefix: &str,
    name: &str,
    roles: &str,
) -> Vec<(String, String)> {
    let db_url = db.url();
    [
        ("STAGE", "test"),
        ("RUST_LOG", "info"),
        ("PALISADE__LOG__FORMAT", "json"),
        ("PALISADE__NODE__ID", name),
        ("PALISADE__NODE__ROLES", roles),
        ("PALISADE__STORE__URL", &db_url),
        ("PALISADE__REDIS__URL", setup.redis),
        ("PALISADE__REDIS__PREFIX", prefix),
        ("PALISADE__CLUSTER__SECRET", CLUSTER_SECRET),
        ("PALISADE__AUTH__BOOTSTRAP_API_KEY", API_KEY),
        ("PALISADE__CLUSTER__HEARTBEAT_SECS", "1"),
        ("PALISADE__CLUSTER__LEADER_LEASE_SECS", "5"),
        ("PALISADE__SCHEDULER__HARVEST_INTERVAL_SECS", "3600"),
        ("PALISADE__SCHEDULER__COMPLIANCE_INTERVAL_SECS", "0"),
        ("PALISADE__SCHEDULER__WORKERS", "4"),
        ("PALISADE__AWS__REQUESTS_PER_SECOND", "100000"),
        ("AWS_ENDPOINT_URL", setup.endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Jobs waiting or running at any priority, from `GET /v2/jobs/queues`.
fn busy(queues: &Value) -> u64 {
    ["p0", "p1", "p2"]
        .iter()
        .map(|p| {
            queues[p]["depth"].as_u64().unwrap_or(0) + queues[p]["running"].as_u64().unwrap_or(0)
        })
        .sum()
}

fn run_cluster(setup: &RunSetup<'_>) -> Result<Run> {
    let tag = format!("{}_{}", std::process::id(), setup.workers);
    let db = ScratchDb::create(format!("palisade_bench_{tag}"))?;
    let keys = RedisPrefix {
        url: setup.redis.to_string(),
        prefix: format!("palisade-bench-{}:", tag.replace('_', "-")),
    };
    let prefix = keys.prefix.clone();

    let migrated = palisade_command(setup.palisade)
        .arg("migrate")
        .env("PALISADE__STORE__URL", db.url())
        .output()
        .context("run palisade migrate")?;
    if !migrated.status.success() {
        bail!(
            "palisade migrate failed: {}",
            String::from_utf8_lossy(&migrated.stderr).trim()
        );
    }

    let log = |name: &str| setup.logs.join(format!("{}w-{name}.log", setup.workers));
    let name = "bench-api";
    let mut api = Node::start(
        setup.palisade,
        name,
        &node_env(setup, &db, &prefix, name, "scheduler,interface"),
        log(name),
    )?;
    let mut workers = Vec::new();
    for i in 1..=setup.workers {
        let name = format!("bench-w{i}");
        workers.push(Node::start(
            setup.palisade,
            &name,
            &node_env(setup, &db, &prefix, &name, "worker"),
            log(&name),
        )?);
    }
    // every node up, the scheduler leading, before the clock starts
    api.wait_for_log("this node leads", Duration::from_secs(30))?;
    for w in &mut workers {
        w.wait_for_log("supervisor started", Duration::from_secs(30))?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = api.get("/v2/cluster/nodes")?;
        let seen = nodes["items"].as_array().map_or(0, Vec::len);
        if seen > setup.workers {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the cluster never listed {} nodes: {nodes}",
                setup.workers + 1
            );
        }
        std::thread::sleep(POLL);
    }

    let body = json!({"provider": "aws", "name": "bench", "regions": REGIONS,
                      "credentials": {"kind": "default"}});
    let posted_at = Utc::now();
    let posted = Instant::now();
    let cloud: Value = ureq::post(&api.url("/v2/clouds"))
        .set("Api-Key", API_KEY)
        .send_json(body)
        .context("POST /v2/clouds")?
        .into_json()?;
    cloud["id"].as_str().context("no cloud id")?;

    let (queues, resources) = loop {
        let harvested: u64 = workers
            .iter()
            .map(|w| NodeWork::read(&w.name, &w.logs()).harvests.len() as u64)
            .sum();
        let queues = api.get("/v2/jobs/queues")?;
        let resources = api.get("/v2/resources?limit=1")?["total"]
            .as_u64()
            .unwrap_or(0);
        if harvested >= setup.jobs && resources == setup.total && busy(&queues) == 0 {
            break (queues, resources);
        }
        if posted.elapsed() > RUN_LIMIT {
            bail!(
                "not done after {} s: {harvested} of {} harvest jobs, {resources} of {} resources, queues {queues}",
                RUN_LIMIT.as_secs(),
                setup.jobs,
                setup.total
            );
        }
        std::thread::sleep(POLL);
    };
    let wall_secs = posted.elapsed().as_secs_f64();

    for w in &mut workers {
        w.stop();
    }
    let nodes: Vec<NodeWork> = workers
        .iter()
        .map(|w| NodeWork::read(&w.name, &w.logs()))
        .collect();
    let jobs = nodes
        .iter()
        .flat_map(|n| &n.harvests)
        .map(|id| HarvestJob::fetch(&api, id))
        .collect::<Result<Vec<_>>>()?;
    api.stop();
    let last = nodes.iter().filter_map(|n| n.last_harvest).max();
    let harvest_secs = last.map_or(wall_secs, |t| {
        (t - posted_at).num_microseconds().unwrap_or(0) as f64 / 1e6
    });
    Ok(Run {
        workers: setup.workers,
        wall_secs,
        harvest_secs,
        resources,
        dead_letter: queues["dead_letter"].as_u64().unwrap_or(0),
        nodes,
        jobs,
    })
}

fn report(walk: &Walk, total: u64, runs: &[Run]) {
    let overrides = overrides();
    println!();
    println!(
        "nodes: scheduler.workers=4, aws.requests_per_second=100000, harvest_interval_secs=3600, compliance_interval_secs=0{}",
        if overrides.is_empty() {
            String::new()
        } else {
            let o: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(", then {}", o.join(" "))
        }
    );
    println!(
        "{:<8} {:>8} {:>10} {:>10} {:>7} {:>10} {:>8}  jobs per node (harvest+compliance)",
        "workers", "wall s", "harvest s", "resources", "res/s", "API calls", "calls/s"
    );
    for r in runs {
        let per_node: Vec<String> = r
            .nodes
            .iter()
            .map(|n| {
                let failed = if n.failed > 0 {
                    format!(", {} failed", n.failed)
                } else {
                    String::new()
                };
                format!("{}: {}+{}{failed}", n.name, n.harvests.len(), n.compliance)
            })
            .collect();
        println!(
            "{:<8} {:>8.2} {:>10.2} {:>10} {:>7.0} {:>10} {:>8.0}  {}",
            r.workers,
            r.wall_secs,
            r.harvest_secs,
            r.resources,
            r.resources as f64 / r.wall_secs.max(1e-9),
            r.api_calls(),
            r.calls_per_sec(),
            per_node.join(", ")
        );
        let longest = r.longest();
        println!(
            "{:<8} longest job {}: {} calls in {:.2} s = {:.0} calls/s ({:.0}% of the harvest phase)",
            "",
            longest.unit,
            longest.api_calls,
            longest.secs,
            longest.calls_per_sec(),
            100.0 * longest.secs / r.harvest_secs.max(1e-9)
        );
        if r.dead_letter > 0 {
            println!("{:<8} {} job(s) dead-lettered", "", r.dead_letter);
        }
    }
    println!(
        "(wall: POST /v2/clouds → every harvest job done, {total} resources listed, queue idle; harvest: → the last harvest job done; res/s over wall, calls/s over the harvest phase)"
    );
    let (Some(one), Some(two)) = (
        runs.iter().find(|r| r.workers == 1),
        runs.iter().find(|r| r.workers == 2),
    ) else {
        return;
    };
    println!();
    println!(
        "speed-up of 2 workers over 1: {:.2}x wall, {:.2}x harvest phase",
        one.wall_secs / two.wall_secs.max(1e-9),
        one.harvest_secs / two.harvest_secs.max(1e-9)
    );

    // moto's rate: the best this bench saw it serve (the walk, a run, a job of 1 s or more)
    let mut moto = (walk.calls_per_sec(), "the sequential walk".to_string());
    for r in runs {
        if r.calls_per_sec() > moto.0 {
            moto = (r.calls_per_sec(), format!("the {}-worker run", r.workers));
        }
        for j in r.jobs.iter().filter(|j| j.secs >= 1.0) {
            if j.calls_per_sec() > moto.0 {
                moto = (
                    j.calls_per_sec(),
                    format!("job {} of the {}-worker run", j.unit, r.workers),
                );
            }
        }
    }
    let share = one.calls_per_sec() / moto.0.max(1e-9);
    println!(
        "moto's rate: {:.0} calls/s at best here ({}); the sequential walk: {:.0}",
        moto.0,
        moto.1,
        walk.calls_per_sec()
    );
    if share >= AT_MOTO_SHARE {
        println!(
            "1 worker already ran at moto's rate ({:.0} calls/s, {:.0}% of it): the speed-up is bounded by moto, not by the cluster",
            one.calls_per_sec(),
            share * 100.0
        );
    } else {
        println!(
            "1 worker ran at {:.0} calls/s, {:.0}% of moto's rate",
            one.calls_per_sec(),
            share * 100.0
        );
    }
    let longest = one.longest();
    println!(
        "the longest job ({}) is one unit that one worker runs alone: with 1 worker it took {:.2} of the {:.2} s harvest phase, so more workers can make that phase at most {:.2}x faster",
        longest.unit,
        longest.secs,
        one.harvest_secs,
        one.harvest_secs / longest.secs.max(1e-9)
    );
}
