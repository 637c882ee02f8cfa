//! REST API benchmark: `wrk` against the release daemon's resource list (filtered, one
//! page) and one resource (with its findings), with 100k resources stored, on the embedded
//! SQLite store and on MySQL.
//!
//! Owns: seeding each store (synthetic resources of every type over two regions, then one
//! compliance run so resources carry findings), starting `palisade run` on it with a
//! bootstrap API key (recurring work off), and running `wrk --latency` three times on each
//! URL; prints the median run's requests/s and latency p50/p99 beside the targets (p99 <
//! 20 ms, >= 5k requests/s), the range of requests/s over the runs, and the CPU time per
//! request of the daemon and of a local MySQL server in the median run.
//! The list's `total` is counted once and then answered from the node's count cache (the
//! store does not change during a run), so the list is run a second time on a daemon with
//! `store.count_cache_entries = 0`: the figure of a listing that counts every time, as the
//! first listing after each write does.
//!
//! Must never: assert on a figure, or touch anything but its own temp directory and its
//! own MySQL database `palisade_bench_api_<pid>` (dropped at the end).
//!
//! Usage: `cargo run --release -p palisade-benches --bin api [-- RESOURCES]` (needs `wrk`,
//! Debian's package, and for MySQL the `mysql` client and a server at
//! `PALISADE_BENCH_MYSQL` (default `mysql://root@127.0.0.1:3306`)).
#![allow(clippy::print_stdout)] // a load generator's output is its figures

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use serde_json::json;

use palisade_actors::compliance::{run_compliance, Catalog};
use palisade_actors::settings::Settings;
use palisade_actors::store;
use palisade_benches::{free_port, host_port, Reaped, Workspace, SCRUBBED_ENV};
use palisade_proto::{CloudId, Resource, ResourceType};

const DEFAULT_RESOURCES: u64 = 100_000;
const API_KEY: &str = "bench-api-key-0123456789abcdef";
/// 32 bytes, base64: the key a MySQL-backed node must be given.
const CREDENTIALS_KEY: &str = "YmVuY2gtY3JlZGVudGlhbHMta2V5LTMyLWJ5dGVzISE=";
const WRK_SECS: u32 = 10;
/// wrk runs per endpoint; the figures printed are those of the median run by requests/s
/// (one 10 s run on a shared 2-core VM varies by 10% and more).
const WRK_RUNS: usize = 3;
const WRK_CONNECTIONS: u32 = 16;
const TYPES: [ResourceType; 9] = [
    ResourceType::AwsEc2Instance,
    ResourceType::AwsEc2SecurityGroup,
    ResourceType::AwsEc2Volume,
    ResourceType::AwsEc2Vpc,
    ResourceType::AwsS3Bucket,
    ResourceType::AwsIamUser,
    ResourceType::AwsRdsDbInstance,
    ResourceType::AwsKmsKey,
    ResourceType::AwsCloudtrailTrail,
];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

fn main() -> Result<()> {
    let total: u64 = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .context("the argument is the number of resources")?,
        None => DEFAULT_RESOURCES,
    };
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed: apt-get install wrk");
    }
    let palisade = Workspace::locate().release_daemon()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("palisade-api-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mysql_server = std::env::var("PALISADE_BENCH_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let db = format!("palisade_bench_api_{}", std::process::id());
    let result = (|| {
        let sqlite = format!("sqlite://{}/palisade.db", dir.display());
        bench(&rt, &palisade, &dir, "embedded SQLite", &sqlite, total)?;
        mysql(&mysql_server, &format!("CREATE DATABASE {db}"))?;
        let url = format!("{mysql_server}/{db}?prefer_socket=false");
        bench(&rt, &palisade, &dir, "MySQL", &url, total)
    })();
    let dropped = mysql(&mysql_server, &format!("DROP DATABASE IF EXISTS {db}"));
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    dropped
}

/// Run one statement with the `mysql` client against the server of `url`.
fn mysql(url: &str, sql: &str) -> Result<()> {
    let (host, port) = host_port(url);
    let out = Command::new("mysql")
        .args(["-h", &host, "-P", &port, "-uroot", "-e", sql])
        .output()
        .context("run the mysql client")?;
    if !out.status.success() {
        bail!(
            "mysql {sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Seed `url`, start the daemon on it and run wrk on both endpoints.
fn bench(
    rt: &tokio::runtime::Runtime,
    palisade: &Path,
    dir: &Path,
    name: &str,
    url: &str,
    total: u64,
) -> Result<()> {
    println!("== {name}: {total} resources");
    let started = Instant::now();
    let sample = rt.block_on(seed(url, total))?;
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());

    // the MySQL server's CPU is counted too when the store is MySQL on this machine
    let server = url.starts_with("mysql:").then(mysql_server_pid).flatten();
    let (daemon, base, log) = start_daemon(palisade, dir, name, url, "256")?;
    let list =
        format!("{base}/v2/resources?type=aws.ec2.instance&region=us-east-1&limit=50&offset=100");
    let one = format!("{base}/v2/resources/{}", sample.uid);
    for (what, url) in [("list (filtered, one page)", &list), ("one resource", &one)] {
        run_wrk(name, what, url, daemon.0.id(), server)?;
    }
    let rss = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .unwrap_or_default();
    println!("{name}: daemon peak RSS {rss} KiB; log {}", log.display());
    drop(daemon);

    let (daemon, base, _) = start_daemon(palisade, dir, name, url, "0")?;
    let list =
        format!("{base}/v2/resources?type=aws.ec2.instance&region=us-east-1&limit=50&offset=100");
    run_wrk(
        name,
        "list, count cache off (a COUNT every time)",
        &list,
        daemon.0.id(),
        server,
    )?;
    drop(daemon);
    Ok(())
}

/// Start `palisade run` on the store at `url` with `store.count_cache_entries` set to
/// `count_cache`, and wait until it is ready; returns it, its base url and its log file.
fn start_daemon(
    palisade: &Path,
    dir: &Path,
    name: &str,
    url: &str,
    count_cache: &str,
) -> Result<(Reaped, String, std::path::PathBuf)> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.join(format!(
        "daemon-{}-cache-{count_cache}.log",
        name.replace(' ', "-")
    ));
    let mut cmd = Command::new(palisade);
    for k in SCRUBBED_ENV {
        cmd.env_remove(k);
    }
    let child = cmd
        .arg("run")
        .current_dir(dir)
        .env("STAGE", "test")
        .env("RUST_LOG", "warn")
        .env("PALISADE__STORE__URL", url)
        .env("PALISADE__HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("PALISADE__AUTH__BOOTSTRAP_API_KEY", API_KEY)
        // a cluster store needs the credentials key named (the bench stores no cloud)
        .env("PALISADE__STORE__CREDENTIALS_KEY", CREDENTIALS_KEY)
        .env("PALISADE__SCHEDULER__HARVEST_INTERVAL_SECS", "0")
        .env("PALISADE__SCHEDULER__COMPLIANCE_INTERVAL_SECS", "0")
        .env("PALISADE__STORE__COUNT_CACHE_ENTRIES", count_cache)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("start {}", palisade.display()))?;
    let mut daemon = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ureq::get(&format!("{base}/readyz"))
        .call()
        .is_ok_and(|r| r.status() == 200)
    {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            bail!("palisade exited early ({status}); see {}", log.display());
        }
        if Instant::now() > deadline {
            bail!("palisade not ready within 60 s; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((daemon, base, log))
}

/// Check that `url` answers 200, then run wrk on it [`WRK_RUNS`] times and print the
/// figures of the median run, with the range of requests/s over all runs, and the CPU time
/// per request of the daemon and of the store's server (their pids; `server` is none for
/// an embedded store): a figure that the other tenants of a shared VM disturb less than
/// requests/s.
fn run_wrk(name: &str, what: &str, url: &str, daemon: u32, server: Option<u32>) -> Result<()> {
    let check = ureq::get(url).set("Api-Key", API_KEY).call();
    match check {
        Ok(r) if r.status() == 200 => {}
        Ok(r) => bail!("{what}: {} answered {}", url, r.status()),
        Err(e) => bail!("{what}: {url}: {e}"),
    }
    let mut runs = (0..WRK_RUNS)
        .map(|_| {
            let before = (cpu_ticks(daemon), server.and_then(cpu_ticks));
            let mut run = wrk(url)?;
            let after = (cpu_ticks(daemon), server.and_then(cpu_ticks));
            run.cpu_us = [(before.0, after.0), (before.1, after.1)].map(|ticks| match ticks {
                (Some(b), Some(a)) if run.requests > 0 => {
                    Some(a.saturating_sub(b) as f64 * 1e6 / TICKS_PER_SEC / run.requests as f64)
                }
                _ => None,
            });
            Ok(run)
        })
        .collect::<Result<Vec<_>>>()?;
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let (low, high) = match (runs.first(), runs.last()) {
        (Some(low), Some(high)) => (low.rps, high.rps),
        _ => bail!("no wrk run"),
    };
    let figures = &runs[runs.len() / 2];
    let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} µs"));
    println!(
        "{name} {what}: {:.0} requests/s (median of {WRK_RUNS} runs, {low:.0}-{high:.0}), \
         p50 {:.2} ms, p99 {:.2} ms ({} connections, {} s each); \
         targets p99 < 20 ms: {}, >= 5k requests/s: {}",
        figures.rps,
        figures.p50_ms,
        figures.p99_ms,
        WRK_CONNECTIONS,
        WRK_SECS,
        met(figures.p99_ms < 20.0),
        met(figures.rps >= 5000.0)
    );
    println!(
        "  CPU per request (that run): daemon {}, store server {}",
        us(figures.cpu_us[0]),
        us(figures.cpu_us[1])
    );
    Ok(())
}

/// Clock ticks of /proc/PID/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// User and system CPU time of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces: fields are counted after its closing parenthesis
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (utime, stime) = (fields.get(11)?, fields.get(12)?);
    Some(utime.parse::<u64>().ok()? + stime.parse::<u64>().ok()?)
}

/// The pid of a MySQL server running on this machine, if there is one.
fn mysql_server_pid() -> Option<u32> {
    let out = Command::new("pidof")
        .args(["mariadbd", "mysqld"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

struct Wrk {
    rps: f64,
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time per request of the daemon and of the MySQL server, when known.
    cpu_us: [Option<f64>; 2],
}

/// `wrk --latency` on `url` with the API key; parses requests/s and the p50/p99 lines.
fn wrk(url: &str) -> Result<Wrk> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{WRK_CONNECTIONS}"),
            &format!("-d{WRK_SECS}s"),
            "--latency",
            "-H",
            &format!("Api-Key: {API_KEY}"),
            url,
        ])
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}");
    }
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx")) {
        bail!("wrk saw errors: {}", line.trim());
    }
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    };
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .context("wrk printed no Requests/sec")?;
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("wrk printed no request count")?;
    let p50 = field("50%").context("wrk printed no p50")?;
    let p99 = field("99%").context("wrk printed no p99")?;
    Ok(Wrk {
        rps,
        requests,
        p50_ms: millis(&p50)?,
        p99_ms: millis(&p99)?,
        cpu_us: [None, None],
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`.
fn millis(v: &str) -> Result<f64> {
    let (n, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("unknown wrk duration {v}")
    };
    Ok(n.parse::<f64>()
        .with_context(|| format!("wrk duration {v}"))?
        * scale)
}

/// Write `total` synthetic resources to the store at `url` (migrating it first), evaluate
/// the built-in insights once, and return one resource that has findings.
async fn seed(url: &str, total: u64) -> Result<Resource> {
    store::migrate(url).await?;
    let store = store::open(url).await?;
    let settings = Settings::defaults().context("embedded defaults")?;
    let catalog = Catalog::builtin(&settings.compliance).context("built-in insights")?;
    store.keep_facts(catalog.facts());
    let cloud = CloudId("bench-cloud".into());
    let now = Utc::now();
    let mut batch = Vec::with_capacity(5000);
    let mut sample = None;
    for n in 0..total {
        let rtype = TYPES[(n % TYPES.len() as u64) as usize];
        let region = REGIONS[(n / 7 % 2) as usize];
        let id = format!(
            "{}-{n:08}",
            rtype.as_str().rsplit('.').next().unwrap_or("r")
        );
        let mut tags = BTreeMap::new();
        if n % 3 != 0 {
            tags.insert("Owner".to_string(), format!("team-{}", n % 17));
        }
        tags.insert(
            "env".to_string(),
            ["prod", "dev"][(n % 2) as usize].to_string(),
        );
        let r = Resource::harvested(
            &cloud,
            "123456789012",
            region,
            rtype,
            &id,
            format!("name-{n}"),
            tags,
            json!({
                "id": id, "encrypted": if n % 4 == 0 { "false" } else { "true" },
                "instanceState": {"name": "running"}, "storageEncrypted": n % 5 != 0,
                "publiclyAccessible": n % 6 == 0, "description": "synthetic resource for the API bench",
                "created": now.to_rfc3339(), "size": n % 500
            }),
            now,
        );
        if sample.is_none() && rtype == ResourceType::AwsEc2Volume && n % 4 == 0 {
            sample = Some(r.clone());
        }
        batch.push(r);
        if batch.len() == 5000 {
            store.upsert_resources(std::mem::take(&mut batch)).await?;
        }
    }
    store.upsert_resources(batch).await?;
    let report = run_compliance(
        store.as_ref(),
        &catalog,
        None,
        now,
        settings.compliance.page_size,
    )
    .await?;
    println!("{} findings open", report.open);
    sample.context("no sample resource: too few resources")
}
