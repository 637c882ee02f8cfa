//! Compliance benchmark: every built-in insight over 1,000,000 synthetic resources read
//! from the embedded SQLite store.
//!
//! Owns: building the synthetic estate (once; cached under `target/bench-data/`, rebuilt
//! when its `.ready` marker is missing or its schema is not this build's) and timing `run_compliance` over it, twice: a cold
//! run (the findings are deleted first, so every finding is new) and a steady-state run an
//! hour later (nothing changed, so nothing should be written). Prints for each: wall time,
//! CPU time (user and system, from `/proc/self/stat`), resources/s, peak RSS (VmHWM, reset
//! before each run so it measures the run alone); plus findings per insight and a
//! scan-only pass to attribute the cost.
//! Target: under 2 s on one core (`taskset -c 0`), peak RSS under 256 MB.
//!
//! Must never: assert on timings (it prints figures) or touch anything outside its cache
//! directory.
//!
//! Usage: `cargo run --release -p palisade-benches --bin compliance [-- RESOURCES]`;
//! `BENCH_PAGE_SIZE` overrides the configured scan page, `BENCH_NO_ATTRIBUTION=1` skips the
//! attribution pass, `BENCH_STEADY_ONLY=1` runs one steady run only (for profiling).
#![allow(clippy::print_stdout)] // a load generator's output is its figures

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};

use palisade_actors::compliance::{run_compliance, Catalog};
use palisade_actors::settings::Settings;
use palisade_actors::store::{self, ScanQuery, SharedStore};
use palisade_proto::{CloudId, Resource, ResourceType, ResourceUid, Timestamp};

const DEFAULT_RESOURCES: u64 = 1_000_000;
const BUILD_BATCH: usize = 5_000;

fn main() -> Result<()> {
    let total: u64 = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .context("the argument is the number of resources")?,
        None => DEFAULT_RESOURCES,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(run(total))
}

async fn run(total: u64) -> Result<()> {
    let settings = Settings::defaults().context("embedded defaults")?;
    let catalog = Catalog::builtin(&settings.compliance).context("built-in insights")?;
    let page_size = match std::env::var("BENCH_PAGE_SIZE") {
        Ok(n) => n
            .parse()
            .context("BENCH_PAGE_SIZE is a number of resources")?,
        Err(_) => settings.compliance.page_size,
    };

    let dir = target_dir()?.join("bench-data");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join(format!("compliance-{total}.db"));
    let ready = dir.join(format!("compliance-{total}.db.ready"));
    let url = format!("sqlite://{}", db.display());
    if ready.exists() && schema_of(&db)? != current_schema(&dir).await? {
        println!("cached estate has an older schema: rebuilding it");
        std::fs::remove_file(&ready)?;
    }
    if !ready.exists() {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let started = Instant::now();
        let store = store::open(&url).await?;
        store.keep_facts(catalog.facts());
        build(&store, total).await?;
        drop(store);
        std::fs::write(&ready, total.to_string())?;
        println!(
            "built {} resources at {} in {:.1} s",
            total,
            db.display(),
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("using cached estate {}", db.display());
    }

    let store = store::open(&url).await?;
    let counts = store.count_resources_by_type(None).await?;
    let live: u64 = counts.values().sum();
    if live != total {
        bail!(
            "cached estate has {live} resources, expected {total}: delete {}",
            ready.display()
        );
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("cpus available: {cpus} (one-core figure: run under `taskset -c 0`)");

    if std::env::var_os("BENCH_STEADY_ONLY").is_some() {
        // for profiling: one run over the findings the last run left
        let reset = reset_peak_rss();
        let steady = timed(&store, &catalog, Utc::now(), page_size).await?;
        steady.print("steady run", reset);
        return Ok(());
    }
    // attribution pass: reading pages vs evaluating them, and what JSON parsing costs
    let reset = reset_peak_rss();
    if std::env::var_os("BENCH_NO_ATTRIBUTION").is_none() {
        let parts = attribute(&store, &catalog, page_size).await?;
        println!(
            "read only: {} resources in {:.3} s ({:.0} resources/s, {:.2} us/resource)",
            parts.resources,
            parts.read_secs,
            parts.resources as f64 / parts.read_secs,
            parts.read_secs * 1e6 / parts.resources as f64
        );
        println!(
            "evaluate only (in memory): {:.3} s ({:.2} us/resource, {} findings)",
            parts.eval_secs,
            parts.eval_secs * 1e6 / parts.resources as f64,
            parts.findings
        );
        println!(
            "properties JSON parse alone (sample of {}): {:.2} us/resource",
            parts.parse_sample,
            parts.parse_secs * 1e6 / parts.parse_sample.max(1) as f64
        );
    }

    // the cold run: every finding new
    let deleted = forget_findings(&db)?;
    println!("deleted {deleted} findings before the cold run");
    let now = Utc::now();
    let reset = reset_peak_rss() && reset;
    let cold = timed(&store, &catalog, now, page_size).await?;
    println!("findings per insight:");
    for (id, n) in &cold.report.per_insight {
        println!("  {id:<36} {n}");
    }
    cold.print("cold run", reset);

    // the steady-state run: the same estate an hour later
    let reset = reset_peak_rss() && reset;
    let steady = timed(&store, &catalog, now + Duration::hours(1), page_size).await?;
    steady.print("steady run", reset);

    for (name, run) in [("cold", &cold), ("steady", &steady)] {
        println!(
            "targets ({name}): wall < 2 s on one core: {}; CPU < 2 s: {}; peak RSS < 256 MiB: {}",
            if run.wall < 2.0 { "met" } else { "MISSED" },
            if run.user + run.system < 2.0 {
                "met"
            } else {
                "MISSED"
            },
            if run.peak_kib < 256 * 1024 {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    Ok(())
}

/// One timed compliance run.
struct Run {
    report: palisade_actors::compliance::ComplianceReport,
    wall: f64,
    user: f64,
    system: f64,
    peak_kib: u64,
    /// Bytes the process read through system calls (the store's page reads) during the run.
    read_bytes: u64,
    /// Minor page faults during the run.
    faults: u64,
}

impl Run {
    fn print(&self, name: &str, reset: bool) {
        let r = &self.report;
        println!(
            "{name}: evaluated {} resources, {} open ({} opened), {} resolved",
            r.evaluated, r.open, r.opened, r.resolved
        );
        println!(
            "{name}: wall {:.3} s, CPU user {:.2} s + system {:.2} s, {:.0} resources/s, \
             peak RSS {} MiB{}",
            self.wall,
            self.user,
            self.system,
            r.evaluated as f64 / self.wall,
            self.peak_kib / 1024,
            if reset {
                ""
            } else {
                " (not reset after the build: includes it)"
            }
        );
        println!(
            "{name}: read {} MiB through system calls, {} minor page faults",
            self.read_bytes >> 20,
            self.faults
        );
    }
}

async fn timed(
    store: &SharedStore,
    catalog: &Catalog,
    now: Timestamp,
    page_size: usize,
) -> Result<Run> {
    let (user0, system0) = cpu_secs();
    let (read0, faults0) = (read_chars(), stat_field(7));
    let started = Instant::now();
    let report = run_compliance(store.as_ref(), catalog, None, now, page_size).await?;
    let wall = started.elapsed().as_secs_f64();
    let (user1, system1) = cpu_secs();
    let (read1, faults1) = (read_chars(), stat_field(7));
    Ok(Run {
        report,
        wall,
        user: user1 - user0,
        system: system1 - system0,
        peak_kib: peak_rss_kib(),
        read_bytes: read1 - read0,
        faults: faults1 - faults0,
    })
}

/// The schema of a SQLite file: every object's SQL, by name.
fn schema_of(db: &std::path::Path) -> Result<Vec<String>> {
    let conn = rusqlite::Connection::open(db)?;
    let mut stmt =
        conn.prepare("SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The schema this build creates, from a fresh store in the cache directory.
async fn current_schema(dir: &std::path::Path) -> Result<Vec<String>> {
    let probe = dir.join("schema-probe.db");
    let clear = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", probe.display()));
        }
    };
    clear();
    drop(store::open(&format!("sqlite://{}", probe.display())).await?);
    let schema = schema_of(&probe);
    clear();
    schema
}

/// Delete every finding and run record of the cached estate, so that the next run is a
/// first evaluation. Returns how many findings there were.
fn forget_findings(db: &std::path::Path) -> Result<usize> {
    let conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let n = conn.execute("DELETE FROM findings", [])?;
    conn.execute("DELETE FROM compliance_runs", [])?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(n)
}

/// User and system CPU seconds of this process so far (`/proc/self/stat`, 100 Hz ticks).
fn cpu_secs() -> (f64, f64) {
    // utime and stime are fields 14 and 15 of stat(5)
    (stat_field(11) as f64 / 100.0, stat_field(12) as f64 / 100.0)
}

/// Field `n + 3` of `/proc/self/stat` (`n = 7` is minflt, field 10).
fn stat_field(n: usize) -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // the fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .nth(n)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Bytes read through system calls so far (`rchar` of `/proc/self/io`).
fn read_chars() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("rchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Attribution {
    resources: u64,
    read_secs: f64,
    eval_secs: f64,
    findings: u64,
    parse_sample: u64,
    parse_secs: f64,
}

/// Page through every resource the catalog reads, timing the reads and, apart, the
/// in-memory evaluation of each page; on the first pages also time parsing the properties
/// JSON (re-serialized, untimed) to see what the store's per-row parse costs.
async fn attribute(
    store: &SharedStore,
    catalog: &Catalog,
    page_size: usize,
) -> Result<Attribution> {
    let query = ScanQuery {
        cloud: None,
        types: catalog.resource_types(),
        facts: None,
    };
    let now = Utc::now();
    let mut out = Attribution {
        resources: 0,
        read_secs: 0.0,
        eval_secs: 0.0,
        findings: 0,
        parse_sample: 0,
        parse_secs: 0.0,
    };
    let mut after: Option<ResourceUid> = None;
    let mut text = Vec::new();
    loop {
        let started = Instant::now();
        let page = store
            .scan_resources(&query, after.as_ref(), page_size)
            .await?;
        out.read_secs += started.elapsed().as_secs_f64();
        let Some(last) = page.last() else { break };
        after = Some(last.uid.clone());
        out.resources += page.len() as u64;
        let started = Instant::now();
        for r in &page {
            out.findings += catalog.matching(r, now).count() as u64;
        }
        out.eval_secs += started.elapsed().as_secs_f64();
        if out.parse_sample < 100_000 {
            for r in &page {
                text.clear();
                serde_json::to_writer(&mut text, &r.properties)?;
                let started = Instant::now();
                let v: Value = serde_json::from_slice(&text)?;
                out.parse_secs += started.elapsed().as_secs_f64();
                drop(v);
                out.parse_sample += 1;
            }
        }
    }
    Ok(out)
}

/// The workspace's target directory (`CARGO_TARGET_DIR`, else `<workspace>/target`).
fn target_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir.canonicalize()?)
}

/// Reset VmHWM to the current RSS (Linux: `5` to `/proc/self/clear_refs`).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// the synthetic estate

async fn build(store: &SharedStore, total: u64) -> Result<()> {
    let clouds = [
        CloudId("bench-cloud-a".into()),
        CloudId("bench-cloud-b".into()),
    ];
    let epoch = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .context("epoch")?;
    let now = Utc::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut batch = Vec::with_capacity(BUILD_BATCH);
    let mut bytes = 0usize;
    for n in 0..total {
        let cloud = &clouds[(n % 2) as usize];
        let rtype = ResourceType::ALL[(n % ResourceType::ALL.len() as u64) as usize];
        let r = synthetic(cloud, rtype, n, &mut rng, epoch, now);
        bytes += r.properties.to_string().len();
        batch.push(r);
        if batch.len() == BUILD_BATCH {
            store.upsert_resources(std::mem::take(&mut batch)).await?;
            batch.reserve(BUILD_BATCH);
        }
    }
    store.upsert_resources(batch).await?;
    println!(
        "mean properties size: {} bytes",
        bytes / usize::try_from(total.max(1))?
    );
    Ok(())
}

/// xorshift64*: deterministic, good enough to vary synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const REGIONS: &[&str] = &["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];

fn synthetic(
    cloud: &CloudId,
    rtype: ResourceType,
    n: u64,
    rng: &mut Rng,
    epoch: Timestamp,
    now: Timestamp,
) -> Resource {
    let account = "123456789012";
    let region = REGIONS[(n / 10 % REGIONS.len() as u64) as usize];
    let date = |days_ago: u64| (now - Duration::days(days_ago as i64)).to_rfc3339();
    let created = (epoch + Duration::seconds((n % 10_000_000) as i64)).to_rfc3339();
    let mut tags = BTreeMap::new();
    let (region, id, name, props) = match rtype {
        ResourceType::AwsEc2Instance => {
            let id = format!("i-{n:017x}");
            if rng.pct(70) {
                tags.insert("Owner".to_string(), format!("team-{}", n % 40));
            }
            tags.insert("Name".to_string(), format!("web-{n}"));
            let state = ["running", "stopped", "terminated"][rng.below(3) as usize];
            let tag_set: Vec<Value> = tags
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            let props = json!({
                "instanceId": id, "instanceType": "t3.micro", "imageId": format!("ami-{:08x}", n % 977),
                "instanceState": {"code": "16", "name": state}, "launchTime": created,
                "vpcId": format!("vpc-{:08x}", n % 31), "subnetId": format!("subnet-{:08x}", n % 97),
                "privateIpAddress": format!("10.{}.{}.{}", n % 256, (n / 256) % 256, n % 250 + 1),
                "tagSet": tag_set,
                "groupSet": [{"groupId": format!("sg-{:08x}", n % 53), "groupName": "web"}]
            });
            (region, id, format!("web-{n}"), props)
        }
        ResourceType::AwsEc2SecurityGroup => {
            let id = format!("sg-{n:017x}");
            let world = rng.pct(15);
            let port = ["22", "3389", "443", "80"][rng.below(4) as usize];
            let props = json!({
                "groupId": id, "groupName": format!("sg-{n}"), "vpcId": format!("vpc-{:08x}", n % 31),
                "ownerId": account, "groupDescription": "synthetic security group",
                "ipPermissions": [
                    {"ipProtocol": "tcp", "fromPort": "443", "toPort": "443",
                     "ipRanges": [{"cidrIp": "0.0.0.0/0"}], "ipv6Ranges": [], "groups": [], "prefixListIds": []},
                    {"ipProtocol": if rng.pct(10) { "-1" } else { "tcp" }, "fromPort": port, "toPort": port,
                     "ipRanges": [{"cidrIp": if world { "0.0.0.0/0" } else { "10.0.0.0/8" }}],
                     "ipv6Ranges": [], "groups": [], "prefixListIds": []}
                ],
                "ipPermissionsEgress": [{"ipProtocol": "-1", "ipRanges": [{"cidrIp": "0.0.0.0/0"}],
                                         "ipv6Ranges": [], "groups": [], "prefixListIds": []}],
                "tagSet": []
            });
            (region, id.clone(), format!("sg-{n}"), props)
        }
        ResourceType::AwsEc2Volume => {
            let id = format!("vol-{n:017x}");
            let props = json!({
                "volumeId": id, "size": (8 + n % 500).to_string(), "volumeType": "gp3",
                "encrypted": if rng.pct(30) { "false" } else { "true" }, "state": "in-use",
                "availabilityZone": format!("{region}a"), "createTime": created,
                "iops": "3000", "throughput": "125", "multiAttachEnabled": "false",
                "attachmentSet": [{"volumeId": id, "instanceId": format!("i-{:017x}", n), "device": "/dev/xvda",
                                   "status": "attached", "attachTime": created, "deleteOnTermination": "true"}],
                "tagSet": []
            });
            (region, id.clone(), id, props)
        }
        ResourceType::AwsEc2Vpc => {
            let id = format!("vpc-{n:017x}");
            let props = json!({
                "vpcId": id, "cidrBlock": format!("10.{}.0.0/16", n % 256), "isDefault": "false",
                "state": "available", "dhcpOptionsId": "dopt-1", "instanceTenancy": "default",
                "cidrBlockAssociationSet": [{"associationId": format!("vpc-cidr-assoc-{n}"),
                    "cidrBlock": format!("10.{}.0.0/16", n % 256), "cidrBlockState": {"state": "associated"}}],
                "tagSet": []
            });
            (region, id.clone(), id, props)
        }
        ResourceType::AwsS3Bucket => {
            let id = format!("bench-bucket-{n}");
            let mut grants = vec![
                json!({"Grantee": {"Type": "CanonicalUser", "ID": "79a59df900b949e5", "DisplayName": "owner"},
                                         "Permission": "FULL_CONTROL"}),
            ];
            if rng.pct(10) {
                grants.push(json!({"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                                   "Permission": "READ"}));
            }
            let encryption = if rng.pct(25) {
                Value::Null
            } else {
                json!({"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": "false"}]})
            };
            let props = json!({
                "Name": id, "CreationDate": created, "Region": region,
                "Acl": {"Owner": {"ID": "79a59df900b949e5", "DisplayName": "owner"}, "Grants": grants},
                "Encryption": encryption, "PublicAccessBlock": null, "PolicyStatus": null,
                "Versioning": {"Status": "Enabled"}
            });
            (region, id.clone(), id, props)
        }
        ResourceType::AwsIamUser => {
            let id = format!("user-{n}");
            let mfa = if rng.pct(60) {
                json!([{"SerialNumber": format!("arn:aws:iam::{account}:mfa/{id}"), "EnableDate": created}])
            } else {
                json!([])
            };
            let login = if rng.pct(50) {
                json!({"CreateDate": created, "PasswordResetRequired": "false"})
            } else {
                Value::Null
            };
            let keys = json!([
                {"AccessKeyId": format!("AKIA{n:016X}"), "Status": if rng.pct(80) { "Active" } else { "Inactive" },
                 "CreateDate": date(rng.below(200))}
            ]);
            let props = json!({
                "UserName": id, "UserId": format!("AIDA{n:017X}"), "Arn": format!("arn:aws:iam::{account}:user/{id}"),
                "Path": "/", "CreateDate": created, "MFADevices": mfa, "LoginProfile": login,
                "AccessKeys": keys, "Tags": []
            });
            ("global", id.clone(), id, props)
        }
        ResourceType::AwsRdsDbInstance => {
            let id = format!("db-{n}");
            let props = json!({
                "DBInstanceIdentifier": id, "DBInstanceArn": format!("arn:aws:rds:{region}:{account}:db:{id}"),
                "Engine": "postgres", "EngineVersion": "15.4", "DBInstanceClass": "db.t3.micro",
                "DBInstanceStatus": "available", "AllocatedStorage": "20", "MultiAZ": "false",
                "PubliclyAccessible": if rng.pct(10) { "true" } else { "false" },
                "StorageEncrypted": if rng.pct(20) { "false" } else { "true" },
                "Endpoint": {"Address": format!("{id}.abc.{region}.rds.amazonaws.com"), "Port": "5432"},
                "TagList": []
            });
            (region, id.clone(), id, props)
        }
        ResourceType::AwsKmsKey => {
            let id = format!("{:08x}-0000-4000-8000-{n:012x}", n % 0xffff_ffff);
            let customer = rng.pct(60);
            let rotation = if customer {
                json!(rng.pct(50))
            } else {
                Value::Null
            };
            let props = json!({
                "KeyId": id, "Arn": format!("arn:aws:kms:{region}:{account}:key/{id}"),
                "KeyManager": if customer { "CUSTOMER" } else { "AWS" }, "KeyState": "Enabled",
                "Enabled": true, "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT",
                "CreationDate": 1_704_067_200 + n, "KeyRotationEnabled": rotation,
                "Aliases": [format!("alias/bench-{n}")]
            });
            (region, id.clone(), format!("alias/bench-{n}"), props)
        }
        ResourceType::AwsCloudtrailTrail => {
            let name = format!("trail-{n}");
            let arn = format!("arn:aws:cloudtrail:{region}:{account}:trail/{name}");
            let props = json!({
                "Name": name, "TrailARN": arn, "HomeRegion": region,
                "IsMultiRegionTrail": rng.pct(50), "S3BucketName": format!("bench-trail-logs-{}", n % 13),
                "IncludeGlobalServiceEvents": true, "LogFileValidationEnabled": true, "IsLogging": rng.pct(90)
            });
            (region, arn, name, props)
        }
        ResourceType::AwsAccount => {
            // one account resource per synthetic "account": the id varies so each row is distinct
            let id = format!("{:012}", n);
            let trails: Vec<Value> = (0..(n % 3))
                .map(|t| {
                    json!({"TrailARN": format!("arn:aws:cloudtrail:us-east-1:{id}:trail/t{t}"), "Name": format!("t{t}"),
                           "HomeRegion": "us-east-1", "IsMultiRegionTrail": rng.pct(50), "IsLogging": rng.pct(80)})
                })
                .collect();
            let props = json!({"AccountId": id, "Arn": format!("arn:aws:iam::{id}:user/bench"), "Trails": trails});
            ("global", id.clone(), id, props)
        }
    };
    Resource::harvested(cloud, account, region, rtype, id, name, tags, props, now)
}
