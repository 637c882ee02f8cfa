//! Cluster tests: several real `palisade` nodes on loopback sharing a real MariaDB database
//! and a real Redis, harvesting a moto estate; nodes are SIGKILLed, Redis is restarted, the
//! bus is fed forged messages.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::support::aws_env;
use crate::support::cluster::{
    fresh_prefix, migrate, node_env, redis_cli, shared_redis_url, PrivateRedis, ScratchDb, TcpRelay,
};
use crate::support::daemon::Daemon;
use crate::support::moto::{Expected, Moto};
use crate::REGIONS;

/// What every cluster test starts from: moto seeded with the estate of `regions`, and a
/// scratch MariaDB database with Palisade's schema.
struct Bed {
    moto: Moto,
    expected: Expected,
    db: ScratchDb,
}

impl Bed {
    fn new(regions: &[&str]) -> Bed {
        let moto = Moto::start();
        let expected = moto.seed(regions, &[]);
        let db = ScratchDb::new();
        migrate(&db.url());
        Bed { moto, expected, db }
    }
}

/// The environment of a node named `node` with `roles`, plus `extra`.
fn env(
    moto: &Moto,
    db: &ScratchDb,
    redis: &str,
    prefix: &str,
    node: &str,
    roles: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut e = aws_env(&moto.endpoint());
    e.extend(node_env(node, roles, &db.url(), redis, prefix));
    e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    e
}

/// Add the moto account as a cloud through `api`; returns its id.
fn add_cloud(api: &Daemon) -> String {
    let body = json!({"provider": "aws", "name": "moto", "regions": REGIONS,
                      "credentials": {"kind": "keys", "access_key_id": "testing",
                                      "secret_access_key": "testing-secret-value"}});
    let (status, cloud) = api.request("POST", "/v2/clouds", Some(&body.to_string()));
    assert_eq!(status, 201, "{cloud}");
    cloud["id"].as_str().expect("cloud id").to_string()
}

/// Poll `GET /v2/jobs/{id}` until `ok` holds for it.
fn wait_for(
    api: &Daemon,
    id: &str,
    limit: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let job = api.get(&format!("/v2/jobs/{id}"));
        if ok(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never {what}: {job}\n{}",
            api.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Resources per type, as the API reports them, equal the seeded estate's.
fn assert_inventory(api: &Daemon, expected: &Expected) {
    for (rtype, n) in &expected.types {
        let page = api.get(&format!("/v2/resources?type={rtype}&limit=1"));
        assert_eq!(page["total"].as_u64(), Some(*n), "{rtype}: {page}");
    }
}

/// Remove a test's keys from a shared Redis.
fn forget_prefix(redis: &str, prefix: &str) {
    redis_cli(
        redis,
        &[
            "EVAL",
            "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0",
            "0",
            &format!("{prefix}*"),
        ],
    );
}

#[test]
fn a_worker_killed_mid_harvest_loses_no_job_and_duplicates_nothing() {
    let bed = Bed::new(&REGIONS);
    let (moto, db, expected) = (&bed.moto, &bed.db, &bed.expected);
    let (redis, prefix) = (shared_redis_url(), fresh_prefix());
    // a slow harvest (a small token bucket), so that the kill lands in the middle of it
    let slow = [
        ("PALISADE__AWS__REQUESTS_PER_SECOND", "15"),
        ("PALISADE__AWS__BURST", "1"),
    ];
    let api = Daemon::start(&env(
        moto,
        db,
        &redis,
        &prefix,
        "it-api",
        "scheduler,interface",
        &[],
    ));
    let mut w1 = Daemon::start_headless(&env(moto, db, &redis, &prefix, "it-w1", "worker", &slow));
    let mut w2 = Daemon::start_headless(&env(moto, db, &redis, &prefix, "it-w2", "worker", &slow));
    let cloud = add_cloud(&api);
    // the interface node stored the credentials sealed; the workers, which hold the same
    // key, open them to harvest
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM clouds WHERE credentials LIKE 'v1:%' \
             AND credentials NOT LIKE '%testing%'"
        ),
        1
    );

    let (status, job) = api.request("POST", &format!("/v2/clouds/{cloud}/harvest"), None);
    assert_eq!(status, 202, "{job}");
    let id = job["job_id"].as_str().expect("job id").to_string();
    let running = wait_for(&api, &id, Duration::from_secs(30), "ran", |j| {
        j["state"] == "running"
    });
    let first = running["node"]
        .as_str()
        .expect("the job names its node")
        .to_string();
    // let it write part of the inventory, then kill its node outright
    std::thread::sleep(Duration::from_millis(1500));
    let (victim, survivor) = if first == "it-w1" {
        (&mut w1, "it-w2")
    } else {
        (&mut w2, "it-w1")
    };
    victim.kill();

    let done = wait_for(&api, &id, Duration::from_secs(240), "finished", |j| {
        matches!(j["state"].as_str(), Some("done" | "failed"))
    });
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        done["node"], survivor,
        "the job ran again on the other worker: {done}"
    );
    api.wait_idle(Duration::from_secs(120));

    assert_inventory(&api, expected);
    let total: u64 = expected.types.values().sum();
    let rows = db.scalar("SELECT COUNT(*) FROM resources WHERE deleted_at IS NULL");
    let distinct = db.scalar("SELECT COUNT(DISTINCT cloud, rtype, region, id) FROM resources");
    assert_eq!(
        u64::try_from(rows).ok(),
        Some(total),
        "live rows equal the estate"
    );
    assert_eq!(rows, distinct, "no resource stored twice");
    let queues = api.get("/v2/jobs/queues");
    assert_eq!(queues["dead_letter"], 0, "{queues}");
    drop((w1, w2));
    forget_prefix(&redis, &prefix);
}

#[test]
fn the_standby_scheduler_takes_over_when_the_leader_is_killed() {
    let bed = Bed::new(&REGIONS[..1]);
    let (moto, db) = (&bed.moto, &bed.db);
    let (redis, prefix) = (shared_redis_url(), fresh_prefix());
    let cadence = [("PALISADE__SCHEDULER__HARVEST_INTERVAL_SECS", "6")];
    let api = Daemon::start(&env(
        moto,
        db,
        &redis,
        &prefix,
        "it-w",
        "worker,interface",
        &[],
    ));
    add_cloud(&api);
    let mut s1 = Daemon::start_headless(&env(
        moto,
        db,
        &redis,
        &prefix,
        "it-s1",
        "scheduler",
        &cadence,
    ));
    let leader = |want: &str, limit: Duration| {
        let deadline = Instant::now() + limit;
        loop {
            let v = redis_cli(&redis, &["GET", &format!("{prefix}leader")]);
            if v.starts_with(&format!("{want}|")) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{want} never led (leader key: {v:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = leader("it-s1", Duration::from_secs(10));
    let s2 = Daemon::start_headless(&env(
        moto,
        db,
        &redis,
        &prefix,
        "it-s2",
        "scheduler",
        &cadence,
    ));
    // the recurring harvests run under s1
    let runs = |d: &Daemon| d.logs().lines().filter(|l| l.contains("job done")).count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while runs(&api) == 0 {
        assert!(
            Instant::now() < deadline,
            "no recurring job ran: {}",
            api.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !s2.logs().contains("this node leads"),
        "s2 stands by: {}",
        s2.logs()
    );

    s1.kill();
    let killed_at = Instant::now();
    let second = leader("it-s2", Duration::from_secs(10));
    assert!(
        killed_at.elapsed() <= Duration::from_secs(2 * 2 + 1),
        "the standby took over within twice the lease"
    );
    let token = |v: &str| {
        v.rsplit('|')
            .next()
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(token(&second) > token(&first), "{first} then {second}");

    // recurring work goes on under s2, and no recurring job is ever queued twice at once
    let before = runs(&api);
    let deadline = Instant::now() + Duration::from_secs(120);
    while runs(&api) <= before {
        assert!(
            Instant::now() < deadline,
            "no recurring job after the failover: {}",
            api.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s2.logs().contains("this node leads"), "{}", s2.logs());
    forget_prefix(&redis, &prefix);
}

#[test]
fn nodes_ride_out_a_redis_restart_and_drop_forged_bus_messages() {
    let bed = Bed::new(&REGIONS);
    let (moto, db, expected) = (&bed.moto, &bed.db, &bed.expected);
    let mut redis = PrivateRedis::start();
    let prefix = fresh_prefix();
    let node = Daemon::start(&env(
        moto,
        db,
        &redis.url(),
        &prefix,
        "it-all",
        "scheduler,worker,interface",
        &[],
    ));
    let cloud = add_cloud(&node);
    let (_, job) = node.request("POST", &format!("/v2/clouds/{cloud}/harvest"), None);
    let id = job["job_id"].as_str().expect("job id").to_string();
    wait_for(&node, &id, Duration::from_secs(30), "ran", |j| {
        j["state"] == "running"
    });

    // Redis goes away for two seconds in the middle of the harvest
    redis.restart(Duration::from_secs(2));
    let done = wait_for(&node, &id, Duration::from_secs(240), "finished", |j| {
        matches!(j["state"].as_str(), Some("done" | "failed"))
    });
    assert_eq!(done["state"], "done", "{done}");
    // and the node goes on taking work afterwards
    let (_, job) = node.request("POST", &format!("/v2/clouds/{cloud}/harvest"), None);
    let again = job["job_id"].as_str().expect("job id").to_string();
    let done = wait_for(&node, &again, Duration::from_secs(240), "finished", |j| {
        matches!(j["state"].as_str(), Some("done" | "failed"))
    });
    assert_eq!(done["state"], "done", "{done}");
    node.wait_idle(Duration::from_secs(120));
    assert_inventory(&node, expected);

    // hostile messages on the bus channel: dropped, counted, and the node lives on
    let channel = format!("{prefix}events");
    let publish_raw = |bytes: &[u8]| {
        let mut child = std::process::Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &redis.port.to_string(),
                "-x",
                "PUBLISH",
                &channel,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-cli");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(bytes)
            .expect("write");
        child.wait().expect("redis-cli exits");
    };
    let mut forged = vec![0u8, 2];
    forged.extend((0..80u8).map(|b| b.wrapping_mul(37)));
    publish_raw(&forged);
    publish_raw(&[0u8]);
    let mut unknown = vec![0u8, 9];
    unknown.extend([1u8; 64]);
    publish_raw(&unknown);
    publish_raw(&vec![0u8; 70 * 1024]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = ureq::get(&node.url("/metrics"))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default();
        let seen = ["bad_signature", "truncated", "unknown_version", "oversized"]
            .iter()
            .all(|r| metrics.contains(&format!("palisade_bus_dropped_total{{reason=\"{r}\"}}")));
        if seen {
            break;
        }
        assert!(Instant::now() < deadline, "drops not counted: {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(node.get("/healthz")["status"], "ok");
    let nodes = node.get("/v2/cluster/nodes");
    assert_eq!(nodes["items"][0]["node"], "it-all", "{nodes}");
}

#[test]
fn jobs_retry_through_a_mysql_outage_and_nothing_stored_is_lost() {
    let bed = Bed::new(&REGIONS);
    let (moto, db, expected) = (&bed.moto, &bed.db, &bed.expected);
    let relay = TcpRelay::start("127.0.0.1:3306");
    // prefer_socket=false: else mysql_async moves to the server's Unix socket, past the relay
    let via_relay = format!(
        "mysql://root@127.0.0.1:{}/{}?prefer_socket=false",
        relay.port, db.name
    );
    let (redis, prefix) = (shared_redis_url(), fresh_prefix());
    let mut vars = env(
        moto,
        db,
        &redis,
        &prefix,
        "it-solo",
        "scheduler,worker,interface",
        &[
            ("PALISADE__QUEUE__RETRY_BACKOFF_SECS", "1"),
            ("PALISADE__QUEUE__MAX_ATTEMPTS", "8"),
            // slow enough that the outage lands in the middle of the harvest
            ("PALISADE__AWS__REQUESTS_PER_SECOND", "15"),
            ("PALISADE__AWS__BURST", "1"),
        ],
    );
    vars.retain(|(k, _)| k != "PALISADE__STORE__URL");
    vars.push(("PALISADE__STORE__URL".into(), via_relay));
    let node = Daemon::start(&vars);
    let cloud = add_cloud(&node);

    // a first harvest stores the inventory
    let (_, job) = node.request("POST", &format!("/v2/clouds/{cloud}/harvest"), None);
    let first = job["job_id"].as_str().expect("job id").to_string();
    let done = wait_for(&node, &first, Duration::from_secs(240), "finished", |j| {
        matches!(j["state"].as_str(), Some("done" | "failed"))
    });
    assert_eq!(done["state"], "done", "{done}");
    node.wait_idle(Duration::from_secs(120));
    assert_inventory(&node, expected);

    // MySQL goes away in the middle of a second harvest, for a few seconds
    let (_, job) = node.request("POST", &format!("/v2/clouds/{cloud}/harvest"), None);
    let second = job["job_id"].as_str().expect("job id").to_string();
    wait_for(&node, &second, Duration::from_secs(30), "ran", |j| {
        j["state"] == "running"
    });
    relay.cut();
    let cut_at = std::time::Instant::now();
    let mut statuses = Vec::new();
    while cut_at.elapsed() < Duration::from_secs(4) {
        statuses.push(node.request("GET", "/readyz", None).0);
        std::thread::sleep(Duration::from_millis(200));
    }
    relay.restore();
    assert!(
        statuses.contains(&503),
        "never unready without its store: {statuses:?}"
    );

    let done = wait_for(&node, &second, Duration::from_secs(240), "finished", |j| {
        matches!(j["state"].as_str(), Some("done" | "failed"))
    });
    assert_eq!(
        done["state"], "done",
        "the job retried and completed: {done}"
    );
    node.wait_idle(Duration::from_secs(120));
    assert_inventory(&node, expected);
    assert_eq!(node.get("/readyz")["status"], "ready");
    let logs = node.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("job failed") && l.contains(&second)),
        "the outage failed an attempt: {logs}"
    );
    forget_prefix(&redis, &prefix);
}

#[test]
fn a_cancelled_job_is_dead_lettered_and_requeued_and_a_drained_worker_takes_nothing() {
    let bed = Bed::new(&REGIONS);
    let (moto, db, expected) = (&bed.moto, &bed.db, &bed.expected);
    let (redis, prefix) = (shared_redis_url(), fresh_prefix());
    let slow = [
        ("PALISADE__AWS__REQUESTS_PER_SECOND", "10"),
        ("PALISADE__AWS__BURST", "1"),
    ];
    let api = Daemon::start(&env(
        moto,
        db,
        &redis,
        &prefix,
        "it-api",
        "scheduler,interface",
        &[],
    ));
    let worker = Daemon::start_headless(&env(moto, db, &redis, &prefix, "it-w", "worker", &slow));
    let cloud = add_cloud(&api);

    // cancel a running harvest: it stops on its node, failed for good, in the dead letters
    let (_, job) = api.request("POST", &format!("/v2/clouds/{cloud}/harvest"), None);
    let id = job["job_id"].as_str().expect("job id").to_string();
    wait_for(&api, &id, Duration::from_secs(30), "ran", |j| {
        j["state"] == "running"
    });
    let (status, body) = api.request("POST", &format!("/v2/jobs/{id}/cancel"), None);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["node"], "it-w");
    let failed = wait_for(&api, &id, Duration::from_secs(30), "stopped", |j| {
        j["state"] == "failed"
    });
    assert_eq!(failed["error"], "cancelled by request", "{failed}");
    let dead = api.get("/v2/jobs/dead");
    assert!(
        dead["items"]
            .as_array()
            .is_some_and(|d| d.iter().any(|j| j["id"] == id.as_str())),
        "{dead}"
    );
    assert_eq!(api.get("/v2/jobs/queues")["dead_letter"], 1);
    assert!(
        worker.logs().contains("harvest cancelled"),
        "the harvest itself stopped: {}",
        worker.logs()
    );

    // queued again from the dead letters, it runs to the end
    let (status, body) = api.request("POST", &format!("/v2/jobs/{id}/requeue"), None);
    assert_eq!(status, 202, "{body}");
    let done = wait_for(&api, &id, Duration::from_secs(240), "finished", |j| {
        matches!(j["state"].as_str(), Some("done" | "failed"))
    });
    assert_eq!(done["state"], "done", "{done}");
    api.wait_idle(Duration::from_secs(120));
    assert_inventory(&api, expected);
    assert_eq!(api.get("/v2/jobs/queues")["dead_letter"], 0);

    // drained, the worker takes no new job; the job waits in the queue
    let (status, _) = api.request("POST", "/v2/cluster/nodes/it-w/drain", None);
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !worker.logs().contains("draining on request") {
        assert!(
            Instant::now() < deadline,
            "drain not heard: {}",
            worker.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, job) = api.request("POST", &format!("/v2/clouds/{cloud}/harvest"), None);
    let waiting = job["job_id"].as_str().expect("job id").to_string();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(api.get(&format!("/v2/jobs/{waiting}"))["state"], "queued");
    forget_prefix(&redis, &prefix);
}

#[test]
fn a_node_that_cannot_reach_its_backends_says_so_retries_and_still_stops_cleanly() {
    let db = ScratchDb::new();
    migrate(&db.url());
    let mut node = Daemon::start_headless_unready(&node_env(
        "it-lonely",
        "worker",
        &db.url(),
        "redis://127.0.0.1:1",
        &fresh_prefix(),
    ));
    let logs = node.wait_log(
        "cannot reach redis queue; retrying",
        Duration::from_secs(20),
    );
    assert!(!logs.contains("supervisor started"), "{logs}");
    // it keeps trying, one line an attempt
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.logs().matches("cannot reach redis queue").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second attempt: {}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = node.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", node.logs());
}
