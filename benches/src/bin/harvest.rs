//! Harvest benchmark: the release `palisade` daemon harvesting a moto estate of about
//! 10,000 resources, against a plain sequential boto3 walk of the same data in the same run.
//!
//! Owns: its own moto server (a free loopback port, killed at the end), seeding it with
//! `integration/estate.py` (regions us-east-1 and eu-west-1; `--scale N` gives 4N + N
//! resources beyond the fixed estate, N = 2000 by default), running `benches/walk.py` (the
//! minimal sequential walk: one call after another, Palisade's page sizes, no detail call
//! Palisade's resources do not need) before and after the daemon, and one daemon run
//! (`cargo build --release -p palisade` first, then `target/release/palisade run` in a
//! scratch directory) that harvests the estate once through the API while its RSS is
//! sampled every 50 ms.
//!
//! Prints the figures and, per target, PASS or MISS:
//! - API calls per resource: Palisade's no more than the walk's;
//! - wall time: Palisade's harvest job (started_at → finished_at) within 1.1x the faster
//!   of the two walks (moto serves a few hundred requests/s here: the ratio is what counts);
//! - peak RSS (VmHWM read as soon as the job is done) under 64 MB while harvesting 10k
//!   resources.
//!
//! The daemon runs with `aws.requests_per_second` = 100000: the default token bucket
//! (50/s per account, region and service) deliberately paces below moto's capacity and
//! would measure the limiter, not the harvester. `PALISADE__*` variables in the bench's
//! environment are passed on to the daemon after the bench's own (so
//! `PALISADE__AWS__CONCURRENCY=1` or `PALISADE__AWS__REQUESTS_PER_SECOND=50` show their
//! effect). The daemon's log is kept at `target/bench-data/harvest-daemon.log`.
//!
//! Must never: assert or exit non-zero on a missed target (it prints figures), or leave a
//! moto or daemon process behind.
//!
//! Usage: `cargo run --release -p palisade-benches --bin harvest -- [--scale N]
//! [--endpoint URL (an already seeded moto; no start, no seeding)] [--log LEVEL (the
//! daemon's RUST_LOG, default warn; info shows per-unit completion times)]`.
#![allow(clippy::print_stdout)] // a load generator's output is its figures

use palisade_benches::{
    counts, free_port, seed, walk_json, Moto, Reaped, Workspace, REGIONS, SCRUBBED_ENV,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::DateTime;
use serde_json::{json, Value};

/// The bootstrap (admin) API key the bench starts the daemon with and calls it with.
const API_KEY: &str = "bench-admin-api-key-0123456789";

const DEFAULT_SCALE: u64 = 2000;
const SAMPLE: Duration = Duration::from_millis(50);
const TIME_RATIO_TARGET: f64 = 1.1;
const RSS_TARGET_MB: f64 = 64.0;

struct Args {
    scale: u64,
    endpoint: Option<String>,
    log: String,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        scale: DEFAULT_SCALE,
        endpoint: None,
        log: "warn".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--scale" => args.scale = value()?.parse().context("--scale takes a number")?,
            "--endpoint" => args.endpoint = Some(value()?),
            "--log" => args.log = value()?,
            other => bail!("unknown argument {other} (--scale N, --endpoint URL, --log LEVEL)"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let workspace = Workspace::locate();
    let palisade = workspace.release_daemon()?;
    let Workspace { root, target } = workspace;

    // Moto: ours (started and seeded), or the caller's (already seeded).
    let (_moto, endpoint) = match &args.endpoint {
        Some(url) => {
            println!("using the seeded moto at {url}");
            (None, url.clone())
        }
        None => {
            let moto = Moto::start()?;
            let endpoint = moto.endpoint();
            let started = Instant::now();
            let expected = seed(&root, &endpoint, args.scale)?;
            let total: u64 = expected.values().sum();
            println!(
                "seeded {total} resources (scale {}) in {:.1} s: {}",
                args.scale,
                started.elapsed().as_secs_f64(),
                compact(&expected)
            );
            (Some(moto), endpoint)
        }
    };

    let first = walk(&root, &endpoint)?;
    println!(
        "walk 1: {} calls, {} resources, {:.2} s",
        first.calls, first.resources, first.seconds
    );
    let dir = std::env::temp_dir().join(format!("palisade-harvest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let log = target.join("bench-data/harvest-daemon.log");
    std::fs::create_dir_all(target.join("bench-data"))?;
    let run = harvest(&palisade, &dir, &log, &endpoint, &args.log);
    let _ = std::fs::remove_dir_all(&dir);
    let run = run?;
    let second = walk(&root, &endpoint)?;
    println!(
        "walk 2: {} calls, {} resources, {:.2} s",
        second.calls, second.resources, second.seconds
    );
    report(&first, &second, &run);
    println!("daemon log: {}", log.display());
    Ok(())
}

fn compact(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{}={v}", k.trim_start_matches("aws.")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `walk.py` printed.
struct Walk {
    calls: u64,
    seconds: f64,
    resources: u64,
    retries: u64,
    per_service: BTreeMap<String, u64>,
}

fn walk(root: &Path, endpoint: &str) -> Result<Walk> {
    let v = walk_json(root, endpoint)?;
    Ok(Walk {
        calls: v["calls"].as_u64().context("walk calls")?,
        seconds: v["seconds"].as_f64().context("walk seconds")?,
        resources: v["resources"].as_u64().context("walk resources")?,
        retries: v["retries"].as_u64().unwrap_or(0),
        per_service: counts(&v["per_service"]),
    })
}

/// What the daemon's harvest showed.
struct Run {
    resources: u64,
    api_calls: u64,
    /// The job's own started_at → finished_at.
    job_seconds: f64,
    /// POST /harvest → the poll that saw it done.
    observed_seconds: f64,
    peak_sampled_mb: f64,
    hwm_mb: f64,
    /// `palisade_aws_requests_total` per service (all outcomes) and per outcome.
    per_service: BTreeMap<String, u64>,
    per_outcome: BTreeMap<String, u64>,
    overrides: Vec<String>,
}

fn harvest(palisade: &Path, dir: &Path, log: &Path, endpoint: &str, level: &str) -> Result<Run> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(palisade);
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    let mut overrides = Vec::new();
    for (k, v) in std::env::vars() {
        if k.starts_with("AWS_ENDPOINT_URL") {
            cmd.env_remove(&k);
        }
        if k.starts_with("PALISADE__") {
            overrides.push(format!("{k}={v}"));
        }
    }
    cmd.arg("run")
        .current_dir(dir)
        .env("STAGE", "test")
        .env("RUST_LOG", level)
        .env("PALISADE__HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("PALISADE__AUTH__BOOTSTRAP_API_KEY", API_KEY)
        .env("PALISADE__SCHEDULER__HARVEST_INTERVAL_SECS", "0")
        .env("PALISADE__SCHEDULER__COMPLIANCE_INTERVAL_SECS", "0")
        .env("PALISADE__AWS__REQUESTS_PER_SECOND", "100000")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for o in &overrides {
        if let Some((k, v)) = o.split_once('=') {
            cmd.env(k, v);
        }
    }
    let log_file = std::fs::File::create(log).context("daemon log file")?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("start {}", palisade.display()))?;
    let mut daemon = Reaped(child);
    let pid = daemon.0.id();

    let deadline = Instant::now() + Duration::from_secs(30);
    while !ureq::get(&format!("{base}/healthz"))
        .call()
        .is_ok_and(|r| r.status() == 200)
    {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            bail!("palisade exited early ({status}); see {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("palisade not healthy within 30 s; see {}", log.display());
        }
        std::thread::sleep(SAMPLE);
    }

    let body = json!({"provider": "aws", "name": "bench", "regions": REGIONS,
                      "credentials": {"kind": "default"}});
    let cloud: Value = ureq::post(&format!("{base}/v2/clouds"))
        .set("Api-Key", API_KEY)
        .send_json(body)
        .context("POST /v2/clouds")?
        .into_json()?;
    let id = cloud["id"].as_str().context("cloud id")?.to_string();

    let rss_before = status_kb(pid, "VmRSS").unwrap_or(0);
    let posted = Instant::now();
    let job: Value = ureq::post(&format!("{base}/v2/clouds/{id}/harvest"))
        .set("Api-Key", API_KEY)
        .call()
        .context("POST harvest")?
        .into_json()?;
    let job_id = job["job_id"].as_str().context("job id")?.to_string();
    let mut peak_kb = rss_before;
    let done = loop {
        if let Some(kb) = status_kb(pid, "VmRSS") {
            peak_kb = peak_kb.max(kb);
        }
        let job: Value = ureq::get(&format!("{base}/v2/jobs/{job_id}"))
            .set("Api-Key", API_KEY)
            .call()
            .context("GET job")?
            .into_json()?;
        if matches!(job["state"].as_str(), Some("done" | "failed")) {
            break job;
        }
        if posted.elapsed() > Duration::from_secs(1800) {
            bail!("harvest still running after 30 minutes: {job}");
        }
        std::thread::sleep(SAMPLE);
    };
    let observed_seconds = posted.elapsed().as_secs_f64();
    let hwm_kb = status_kb(pid, "VmHWM").unwrap_or(0);
    if done["state"] != "done" {
        println!("harvest job failed: {}", done["error"]);
    }
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default();
    let (per_service, per_outcome) = aws_requests(&metrics);

    // SIGTERM, then wait for the exit (the compliance job that follows may still run).
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(45);
    while !matches!(daemon.0.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
        std::thread::sleep(SAMPLE);
    }

    let at = |k: &str| {
        done[k]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    };
    let job_seconds = match (at("started_at"), at("finished_at")) {
        (Some(s), Some(f)) => (f - s).num_microseconds().unwrap_or(0) as f64 / 1e6,
        _ => observed_seconds,
    };
    let mb = |kb: u64| kb as f64 / 1024.0;
    Ok(Run {
        resources: done["counts"]["resources"].as_u64().unwrap_or(0),
        api_calls: done["counts"]["api_calls"].as_u64().unwrap_or(0),
        job_seconds,
        observed_seconds,
        peak_sampled_mb: mb(peak_kb),
        hwm_mb: mb(hwm_kb),
        per_service,
        per_outcome,
        overrides,
    })
}

/// A `kB` field of /proc/<pid>/status.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `palisade_aws_requests_total{service="..",outcome=".."} n` summed per service and per
/// outcome.
fn aws_requests(metrics: &str) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let len = line[start..].find('"')?;
        Some(line[start..start + len].to_string())
    };
    let (mut services, mut outcomes) = (BTreeMap::new(), BTreeMap::new());
    for line in metrics.lines() {
        if !line.starts_with("palisade_aws_requests_total{") {
            continue;
        }
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        if let Some(s) = label(line, "service") {
            *services.entry(s).or_insert(0) += n;
        }
        if let Some(o) = label(line, "outcome") {
            *outcomes.entry(o).or_insert(0) += n;
        }
    }
    (services, outcomes)
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn report(first: &Walk, second: &Walk, run: &Run) {
    let walk = if second.seconds < first.seconds {
        second
    } else {
        first
    };
    let per = |calls: u64, resources: u64| calls as f64 / resources.max(1) as f64;
    let (walk_cpr, pal_cpr) = (
        per(walk.calls, walk.resources),
        per(run.api_calls, run.resources),
    );
    let ratio = run.job_seconds / walk.seconds;
    println!();
    if run.overrides.is_empty() {
        println!("daemon overrides: aws.requests_per_second=100000 (the default 50/s per account/region/service paces below moto on purpose)");
    } else {
        println!(
            "daemon overrides: aws.requests_per_second=100000, then {}",
            run.overrides.join(" ")
        );
    }
    println!("{:<28} {:>14} {:>14}", "", "walk (py)", "palisade");
    println!(
        "{:<28} {:>14} {:>14}",
        "resources", walk.resources, run.resources
    );
    println!(
        "{:<28} {:>14} {:>14}",
        "API calls", walk.calls, run.api_calls
    );
    println!(
        "{:<28} {:>14.4} {:>14.4}",
        "API calls / resource", walk_cpr, pal_cpr
    );
    println!(
        "{:<28} {:>14} {:>14}",
        "calls/s",
        format!("{:.0}", walk.calls as f64 / walk.seconds.max(1e-9)),
        format!("{:.0}", run.api_calls as f64 / run.job_seconds.max(1e-9))
    );
    println!(
        "{:<28} {:>14} {:>14.2}",
        "wall s (walk: best of 2)",
        format!(
            "{:.2} ({:.2})",
            walk.seconds,
            first.seconds.max(second.seconds)
        ),
        run.job_seconds
    );
    println!(
        "{:<28} {:>14} {:>14.2}",
        "wall s (POST → seen done)", "", run.observed_seconds
    );
    println!(
        "{:<28} {:>14} {:>14.1}",
        "RSS MB (max of 50 ms samples)", "", run.peak_sampled_mb
    );
    println!(
        "{:<28} {:>14} {:>14.1}",
        "RSS MB (VmHWM at done)", "", run.hwm_mb
    );
    let services: std::collections::BTreeSet<&String> = walk
        .per_service
        .keys()
        .chain(run.per_service.keys())
        .collect();
    for s in services {
        println!(
            "{:<28} {:>14} {:>14}",
            format!("  calls {s}"),
            walk.per_service.get(s).copied().unwrap_or(0),
            run.per_service.get(s).copied().unwrap_or(0)
        );
    }
    println!(
        "{:<28} {:>14} {:>14}",
        "  retries / outcomes",
        first.retries + second.retries,
        compact(&run.per_outcome)
    );
    println!();
    println!(
        "calls per resource {pal_cpr:.4} vs walk {walk_cpr:.4}: {}",
        verdict(pal_cpr <= walk_cpr)
    );
    println!(
        "wall time ratio palisade/walk {ratio:.3} (target <= {TIME_RATIO_TARGET}): {}",
        verdict(ratio <= TIME_RATIO_TARGET)
    );
    let rss = if run.resources < 10_000 {
        "n/a (fewer than 10k resources)"
    } else {
        verdict(run.hwm_mb < RSS_TARGET_MB)
    };
    println!(
        "peak RSS {:.1} MB harvesting {} resources (target < {RSS_TARGET_MB} MB): {rss}",
        run.hwm_mb, run.resources
    );
    if walk.resources != run.resources {
        println!(
            "note: palisade stored {} resources, the walk saw {}",
            run.resources, walk.resources
        );
    }
}
