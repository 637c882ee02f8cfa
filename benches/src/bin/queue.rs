//! Redis queue benchmark: a load generator for `RedisQueue` against a real Redis.
//!
//! Owns: three figures, printed: (a) jobs/s from enqueue to acknowledgement with no-op jobs
//! for 1, 4 and 16 worker slots of one process, the way a node runs them (the worker pool,
//! `scheduler::worker::run_slots`: one `finish_and_take` per turn; 4 concurrent producers
//! with `enqueue_many`), with what each job cost Redis (commands, script calls, and the
//! microseconds of script time, from `INFO commandstats`) and when the last job was queued;
//! then, for comparison, the same with one call per job (`enqueue`, `take`, `finish`) from
//! 1, 4 and 16 independent takers; (b) p0 pick-up latency (enqueue -> the pool starts the job), p50 and p99 over
//! 2000 samples, for an idle one-slot pool on an empty queue and for one draining 400k
//! queued p2 jobs (so that at least 100k are still queued at the last sample); (c) `redis-benchmark -t lpush,rpop -n 200000 -q` on the same Redis, for
//! scale. Targets, for information: >= 20k jobs/s; p0 p99 <= 2 ms.
//!
//! Must never: assert on a figure, or touch keys outside its own `palisade-bench:<pid>:`
//! prefixes (deleted after each run with `redis-cli --scan` and DEL). `redis-benchmark`
//! uses its own `mylist`, which its rpop run leaves empty (so Redis deletes it).
//!
//! Usage: `cargo run --release -p palisade-benches --bin queue [-- JOBS]`; Redis from
//! `PALISADE_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`); `PALISADE_BENCH_THREADS`
//! tokio worker threads (default 2; 0 runs everything on one current-thread runtime, as a
//! node does: its actix system is one); `PALISADE_BENCH_PARTS` the figures to measure
//! (default `abc`).
#![allow(clippy::print_stdout)] // a load generator's output is its figures

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;

use palisade_actors::queue::redis::{RedisQueue, RedisQueueOptions};
use palisade_actors::queue::{JobOutcome, JobQueue, SharedQueue};
use palisade_actors::scheduler::worker::{run_slots, SlotControl};
use palisade_benches::{host_port, redis_cli};
use palisade_proto::{CloudId, HarvestScope, Job, JobId, JobKind, JobPriority};

const DEFAULT_JOBS: usize = 50_000;
const PRODUCERS: usize = 4;
/// Jobs per `enqueue_many` call.
const ENQUEUE_BATCH: usize = 100;
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
    let threads: usize = match std::env::var("PALISADE_BENCH_THREADS") {
        Ok(n) => n
            .parse()
            .context("PALISADE_BENCH_THREADS is a number of threads")?,
        Err(_) => 2,
    };
    let rt = if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let parts = std::env::var("PALISADE_BENCH_PARTS").unwrap_or_else(|_| "abc".into());
    let result = rt.block_on(run(&url, jobs, threads, &parts));
    // whatever happened, leave nothing behind
    let cleaned = cleanup(&url, &format!("palisade-bench:{}:", std::process::id()));
    result?;
    cleaned.map(|_| ())
}

async fn run(url: &str, jobs: usize, threads: usize, parts: &str) -> Result<()> {
    let runtime = match threads {
        0 => "one current-thread runtime".to_string(),
        n => format!("{n} tokio worker threads"),
    };
    println!(
        "redis queue at {} ({} cores; {runtime})",
        palisade_actors::queue::redis::redact_url(url),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if parts.contains('a') {
        println!(
            "(a) enqueue -> take -> finish, {jobs} no-op jobs, {PRODUCERS} producers \
             (enqueue_many, {ENQUEUE_BATCH} a call), one worker pool (finish_and_take a turn)"
        );
        for slots in [1, 4, 16] {
            throughput(url, jobs, slots).await?;
        }
        println!("    for comparison, one call per job: enqueue, take, finish; independent takers");
        for workers in [1, 4, 16] {
            throughput_per_job(url, jobs, workers).await?;
        }
    }
    if parts.contains('b') {
        println!("(b) p0 pick-up latency, enqueue -> the pool starts it, {SAMPLES} samples");
        p0_latency(url, 0).await?;
        // four times the backlog: a prefetching pool drains ~30k no-op jobs/s, and at
        // least BACKLOG must still be queued when the last sample is taken
        p0_latency(url, 4 * BACKLOG).await?;
    }
    if parts.contains('c') {
        println!("(c) redis-benchmark -t lpush,rpop -n 200000 -q");
        redis_benchmark(url)?;
    }
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

/// `jobs` no-op jobs through one worker pool of `slots` slots.
async fn throughput(url: &str, jobs: usize, slots: usize) -> Result<()> {
    let tag = format!("pool{slots}");
    let q = connect(url, &tag).await?;
    let work_before = redis_work(url);
    let started = Instant::now();
    let mut producers = JoinSet::new();
    for p in 0..PRODUCERS {
        let q = q.clone();
        producers.spawn(async move {
            let mine: Vec<usize> = (p..jobs).step_by(PRODUCERS).collect();
            for chunk in mine.chunks(ENQUEUE_BATCH) {
                let batch = chunk
                    .iter()
                    .map(|i| no_op(format!("j{i}"), JobPriority::P1))
                    .collect();
                q.enqueue_many(batch).await?;
            }
            anyhow::Ok(())
        });
    }
    // the pool drains itself once the last job has started; it returns once all are acknowledged
    let control = SlotControl::default();
    let started_jobs = Arc::new(AtomicUsize::new(0));
    let runner = {
        let (control, started_jobs) = (control.clone(), started_jobs.clone());
        move |_job: Job| {
            if started_jobs.fetch_add(1, Ordering::Relaxed) + 1 == jobs {
                stop(&control);
            }
            async { done() }
        }
    };
    let shared: SharedQueue = q.clone();
    let pool = run_slots(shared, "bench-node".into(), slots, control.clone(), runner);
    let produced = async {
        let mut result = anyhow::Ok(());
        while let Some(joined) = producers.join_next().await {
            if let Err(e) = joined.map_err(anyhow::Error::from).and_then(|r| r) {
                result = Err(e);
            }
        }
        if result.is_err() {
            stop(&control); // the jobs will never all come
        }
        (result, started.elapsed().as_secs_f64())
    };
    let ((), (produced, enqueued_secs)) = tokio::join!(pool, produced);
    let secs = started.elapsed().as_secs_f64();
    produced?;
    let stats = q.stats().await?;
    if stats.p1.done != jobs as u64 {
        bail!("{} of {jobs} jobs acknowledged", stats.p1.done);
    }
    println!(
        "  {slots:>2} slots:   {:>8.0} jobs/s ({secs:.2} s, all queued after {enqueued_secs:.2} s; \
         {}; all clients)",
        jobs as f64 / secs,
        work_per_job(work_before, redis_work(url), jobs)
    );
    drop(q);
    cleanup(url, &prefix(&tag))?;
    Ok(())
}

fn per_job(before: Option<u64>, after: Option<u64>, jobs: usize) -> String {
    match (before, after) {
        (Some(a), Some(b)) => format!("{:.1}", b.saturating_sub(a) as f64 / jobs as f64),
        _ => "?".into(),
    }
}

/// Redis's figures, to say where a job's time goes: commands processed, and the
/// microseconds Redis spent in script calls (`cmdstat_evalsha`: every script, the inner
/// commands included), both server-wide.
#[derive(Clone, Copy)]
struct RedisWork {
    commands: Option<u64>,
    script_usec: Option<u64>,
    script_calls: Option<u64>,
}

fn redis_work(url: &str) -> RedisWork {
    let info = redis_cli(url)
        .args(["INFO", "all"])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let stat = |field: &str| -> Option<u64> {
        let line = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))?;
        line.split(',')
            .find_map(|kv| kv.strip_prefix(field))
            .and_then(|v| v.trim().parse().ok())
    };
    RedisWork {
        commands: info
            .lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok()),
        script_usec: stat("usec="),
        script_calls: stat("calls="),
    }
}

/// Per job: Redis commands, script calls and the microseconds Redis spent in scripts.
fn work_per_job(before: RedisWork, after: RedisWork, jobs: usize) -> String {
    let per = |a: Option<u64>, b: Option<u64>, digits: usize| match (a, b) {
        (Some(a), Some(b)) => format!("{:.*}", digits, b.saturating_sub(a) as f64 / jobs as f64),
        _ => "?".into(),
    };
    format!(
        "{} redis commands, {} script calls, {} us of redis script time per job",
        per(before.commands, after.commands, 1),
        per(before.script_calls, after.script_calls, 2),
        per(before.script_usec, after.script_usec, 1),
    )
}

/// `jobs` no-op jobs, one `enqueue`, `take` and `finish` each, through `workers` takers.
async fn throughput_per_job(url: &str, jobs: usize, workers: usize) -> Result<()> {
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
    let per_job = per_job(commands_before, redis_commands(url), jobs);
    println!(
        "  {workers:>2} takers:  {:>8.0} jobs/s ({secs:.2} s; {per_job} redis commands per job, all clients)",
        jobs as f64 / secs
    );
    drop(q);
    cleanup(url, &prefix(&format!("w{workers}")))?;
    Ok(())
}

async fn p0_latency(url: &str, backlog: usize) -> Result<()> {
    let tag = format!("p0-{backlog}");
    let q = connect(url, &tag).await?;
    if backlog > 0 {
        let mut fill = JoinSet::new();
        for p in 0..8 {
            let q = q.clone();
            fill.spawn(async move {
                let mine: Vec<usize> = (p..backlog).step_by(8).collect();
                for chunk in mine.chunks(ENQUEUE_BATCH) {
                    let batch = chunk
                        .iter()
                        .map(|i| no_op(format!("b{i}"), JobPriority::P2))
                        .collect();
                    q.enqueue_many(batch).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = fill.join_next().await {
            joined??;
        }
    }
    // A one-slot pool runs whatever comes next and reports when a p0 job started.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(JobId, Instant)>();
    let control = SlotControl::default();
    let runner = move |job: Job| {
        let at = Instant::now();
        if job.priority == JobPriority::P0 {
            let _ = tx.send((job.id.clone(), at));
        }
        async { done() }
    };
    let shared: SharedQueue = q.clone();
    let pool = run_slots(shared, "worker".into(), 1, control.clone(), runner);
    let sampler = async {
        let sampled = sample(q.as_ref(), &mut rx).await;
        stop(&control);
        sampled
    };
    let ((), sampled) = tokio::join!(pool, sampler);
    let (mut latencies, mut round_trips, left) = sampled?;
    latencies.sort();
    round_trips.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let what = if backlog == 0 {
        "idle pool, empty queue".to_string()
    } else {
        format!("pool draining {backlog} queued p2 jobs ({left} left at the end)")
    };
    let given_back =
        palisade_actors::metrics::value("palisade_jobs_given_back_total", &[("reason", "p0")]);
    println!(
        "  {what}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms \
         (the enqueue call alone: p50 {:.3} ms, p99 {:.3} ms; \
         prefetched jobs given back for a p0 so far: {given_back})",
        ms(latencies[SAMPLES / 2]),
        ms(latencies[SAMPLES * 99 / 100]),
        ms(latencies[SAMPLES - 1]),
        ms(round_trips[SAMPLES / 2]),
        ms(round_trips[SAMPLES * 99 / 100])
    );
    drop(q);
    cleanup(url, &prefix(&tag))?;
    Ok(())
}

/// Enqueue a p0 job every 2 ms or so, `SAMPLES` times, each once the pool started the
/// last; returns the pick-up latencies, the enqueue calls' own round trips (the machine's
/// floor) and the p2 jobs left.
async fn sample(
    q: &RedisQueue,
    started: &mut tokio::sync::mpsc::UnboundedReceiver<(JobId, Instant)>,
) -> Result<(Vec<Duration>, Vec<Duration>, u64)> {
    let mut latencies = Vec::with_capacity(SAMPLES);
    let mut round_trips = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        // a pause, so that an idle pool is waiting again
        tokio::time::sleep(Duration::from_millis(2)).await;
        let id = format!("p0-{i}");
        let sent = Instant::now();
        q.enqueue(no_op(id.clone(), JobPriority::P0)).await?;
        round_trips.push(sent.elapsed());
        let (got, at) = started.recv().await.context("the pool stopped")?;
        if got.as_str() != id {
            bail!("the pool started {got}, not {id}");
        }
        latencies.push(at.duration_since(sent));
    }
    Ok((latencies, round_trips, q.stats().await?.p2.depth))
}

/// Drain a pool: it takes no more jobs and returns once its running ones are acknowledged.
fn stop(control: &SlotControl) {
    control.draining.store(true, Ordering::SeqCst);
    control.drained.notify_waiters();
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
