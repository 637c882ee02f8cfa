//! Redis queue benchmark: a load generator for `RedisQueue` against a real Redis.
//!
//! Owns: three figures, printed: (a) jobs/s from enqueue to acknowledgement with no-op jobs
//! for 1, 4 and 16 concurrent workers of one process (4 concurrent producers), with the
//! Redis commands each job cost; (b) p0 pick-up latency (enqueue -> `take` returns), p50 and
//! p99 over 2000 samples, for an idle worker on an empty queue and for a worker draining
//! 100k queued p2 jobs; (c) `redis-benchmark -t lpush,rpop -n 200000 -q` on the same Redis,
//! for scale. Targets, for information: >= 20k jobs/s; p0 p99 <= 2 ms.
//!
//! Must never: assert on a figure, or touch keys outside its own `palisade-bench:<pid>:`
//! prefixes (deleted after each run with `redis-cli --scan` and DEL). `redis-benchmark`
//! uses its own `mylist`, which its rpop run leaves empty (so Redis deletes it).
//!
//! Usage: `cargo run --release -p palisade-benches --bin queue [-- JOBS]`; Redis from
//! `PALISADE_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`).
#![allow(clippy::print_stdout)] // a load generator's output is its figures

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;

use palisade_actors::queue::redis::{RedisQueue, RedisQueueOptions};
use palisade_actors::queue::{JobOutcome, JobQueue};
use palisade_benches::{host_port, redis_cli};
use palisade_proto::{CloudId, HarvestScope, Job, JobId, JobKind, JobPriority};

const DEFAULT_JOBS: usize = 50_000;
const PRODUCERS: usize = 4;
const SAMPLES: usize = 2000;
const BACKLOG: usize = 100_000;

fn main() -> Result<()> {
    let jobs: usize = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .context("the argument is the number of jobs per run")?,
        None => DEFAULT_JOBS,
    };
    let url = std::env::var("PALISADE_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&url, jobs));
    // whatever happened, leave nothing behind
    let cleaned = cleanup(&url, &format!("palisade-bench:{}:", std::process::id()));
    result?;
    cleaned.map(|_| ())
}

async fn run(url: &str, jobs: usize) -> Result<()> {
    println!(
        "redis queue at {} ({} cores)",
        palisade_actors::queue::redis::redact_url(url),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("(a) enqueue -> take -> finish, {jobs} no-op jobs, {PRODUCERS} producers");
    for workers in [1, 4, 16] {
        throughput(url, jobs, workers).await?;
    }
    println!("(b) p0 pick-up latency, enqueue -> take returns, {SAMPLES} samples");
    p0_latency(url, 0).await?;
    p0_latency(url, BACKLOG).await?;
    println!("(c) redis-benchmark -t lpush,rpop -n 200000 -q");
    redis_benchmark(url)?;
    Ok(())
}

fn prefix(tag: &str) -> String {
    format!("palisade-bench:{}:{tag}:", std::process::id())
}

fn no_op(id: String, priority: JobPriority) -> Job {
    Job {
        id: JobId(id),
        priority,
        kind: JobKind::Harvest(HarvestScope {
            cloud: CloudId("bench".into()),
            regions: vec![],
            types: vec![],
        }),
        enqueued_at: chrono::Utc::now(),
        recurring: false,
    }
}

fn done() -> JobOutcome {
    JobOutcome::Done {
        counts: Default::default(),
    }
}

async fn connect(url: &str, tag: &str) -> Result<Arc<RedisQueue>> {
    let opts = RedisQueueOptions {
        prefix: prefix(tag),
        // finished jobs of a crashed run expire soon
        history_ttl: Duration::from_secs(600),
        ..RedisQueueOptions::default()
    };
    let q = RedisQueue::connect(url, opts).await.with_context(|| {
        format!(
            "redis queue at {}",
            palisade_actors::queue::redis::redact_url(url)
        )
    })?;
    Ok(Arc::new(q))
}

async fn throughput(url: &str, jobs: usize, workers: usize) -> Result<()> {
    let q = connect(url, &format!("w{workers}")).await?;
    let finished = Arc::new(AtomicUsize::new(0));
    let commands_before = redis_commands(url);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for p in 0..PRODUCERS {
        let q = q.clone();
        tasks.spawn(async move {
            for i in (p..jobs).step_by(PRODUCERS) {
                q.enqueue(no_op(format!("j{i}"), JobPriority::P1)).await?;
            }
            anyhow::Ok(())
        });
    }
    for w in 0..workers {
        let (q, finished) = (q.clone(), finished.clone());
        tasks.spawn(async move {
            let node = format!("worker-{w}");
            while finished.load(Ordering::Relaxed) < jobs {
                if let Some(job) = q.take(&node, Duration::from_millis(20)).await? {
                    q.finish(&job.id, done()).await?;
                    finished.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let secs = started.elapsed().as_secs_f64();
    let per_job = match (commands_before, redis_commands(url)) {
        (Some(a), Some(b)) => format!("{:.1}", b.saturating_sub(a) as f64 / jobs as f64),
        _ => "?".into(),
    };
    println!(
        "  {workers:>2} workers: {:>8.0} jobs/s ({secs:.2} s; {per_job} redis commands per job, all clients)",
        jobs as f64 / secs
    );
    drop(q);
    cleanup(url, &prefix(&format!("w{workers}")))?;
    Ok(())
}

async fn p0_latency(url: &str, backlog: usize) -> Result<()> {
    let q = connect(url, &format!("p0-{backlog}")).await?;
    if backlog > 0 {
        let mut fill = JoinSet::new();
        for p in 0..8 {
            let q = q.clone();
            fill.spawn(async move {
                for i in (p..backlog).step_by(8) {
                    q.enqueue(no_op(format!("b{i}"), JobPriority::P2)).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = fill.join_next().await {
            joined??;
        }
    }
    // The worker takes whatever comes next and reports when a p0 job reached it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(JobId, Instant)>();
    let worker = {
        let q = q.clone();
        tokio::spawn(async move {
            while let Some(job) = q.take("worker", Duration::from_secs(1)).await? {
                let at = Instant::now();
                if job.priority == JobPriority::P0 && tx.send((job.id.clone(), at)).is_err() {
                    break;
                }
                q.finish(&job.id, done()).await?;
            }
            anyhow::Ok(())
        })
    };
    let mut latencies = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        // a pause, so that an idle worker is blocked in its wait again
        tokio::time::sleep(Duration::from_millis(2)).await;
        let id = format!("p0-{i}");
        let sent = Instant::now();
        q.enqueue(no_op(id.clone(), JobPriority::P0)).await?;
        let (got, at) = rx.recv().await.context("the worker stopped")?;
        if got.as_str() != id {
            bail!("the worker took {got}, not {id}");
        }
        latencies.push(at.duration_since(sent));
    }
    let left = q.stats().await?.p2.depth;
    q.close().await;
    drop(rx);
    worker.await??;
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let what = if backlog == 0 {
        "idle worker, empty queue".to_string()
    } else {
        format!("worker draining {backlog} p2 jobs ({left} left at the end)")
    };
    println!(
        "  {what}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(latencies[SAMPLES / 2]),
        ms(latencies[SAMPLES * 99 / 100]),
        ms(latencies[SAMPLES - 1])
    );
    drop(q);
    cleanup(url, &prefix(&format!("p0-{backlog}")))?;
    Ok(())
}

/// `total_commands_processed` of the Redis server (every client's, not only ours).
fn redis_commands(url: &str) -> Option<u64> {
    let out = redis_cli(url).args(["INFO", "stats"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
}

fn redis_benchmark(url: &str) -> Result<()> {
    let (host, port) = host_port(url);
    let out = Command::new("redis-benchmark")
        .args(["-h", &host, "-p", &port])
        .args(["-t", "lpush,rpop", "-n", "200000", "-q"])
        .output()
        .context("run redis-benchmark")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for line in String::from_utf8_lossy(&out.stdout).split(['\r', '\n']) {
        if line.contains("requests per second") {
            println!("  {}", line.trim());
        }
    }
    Ok(())
}

/// Delete every key under `prefix`; returns how many there were.
fn cleanup(url: &str, prefix: &str) -> Result<usize> {
    let pattern = format!("{prefix}*");
    let out = redis_cli(url)
        .args(["--scan", "--pattern", &pattern])
        .output()
        .context("run redis-cli --scan")?;
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for chunk in keys.chunks(500) {
        let status = redis_cli(url)
            .arg("DEL")
            .args(chunk)
            .stdout(std::process::Stdio::null())
            .status()
            .context("run redis-cli DEL")?;
        if !status.success() {
            bail!("redis-cli DEL failed");
        }
    }
    Ok(keys.len())
}
