//! Integration tests: the real `palisade` binary against a real moto server, seeded with an
//! estate through boto3 (`integration/estate.py`). One test binary; each test starts the
//! services it needs (its own moto, its own daemon) and fails loudly when it cannot.

mod api_fuzz;
mod auth;
mod cluster;
mod gui;
mod support;
mod tidy;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

use support::daemon::Daemon;
use support::moto::{Expected, Moto};
use support::proxy::{ForwardProxy, ThrottlingShim};
use support::{aws_env, palisade_command};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

fn nonzero(m: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    m.iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn tally<'a>(values: impl Iterator<Item = &'a Value>, key: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for v in values {
        let k = v[key].as_str().unwrap_or("<missing>").to_string();
        *out.entry(k).or_insert(0) += 1;
    }
    out
}

/// Run `palisade scan` over both regions with `env`; returns (exit code, stdout JSON, stderr).
fn scan(env: &[(String, String)]) -> (Option<i32>, Value, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = palisade_command();
    cmd.current_dir(dir.path())
        .args(["scan", "--provider", "aws", "--format", "json"]);
    for r in REGIONS {
        cmd.args(["--region", r]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run palisade scan");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), doc, stderr)
}

fn assert_scan_matches(doc: &Value, expected: &Expected, stderr: &str) {
    let resources = doc["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources: {stderr}"));
    let findings = doc["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings: {stderr}"));
    assert_eq!(
        tally(resources.iter(), "type"),
        nonzero(&expected.types),
        "resources per type"
    );
    assert_eq!(
        tally(findings.iter(), "insight"),
        nonzero(&expected.insights),
        "findings per insight"
    );
    let ids: std::collections::BTreeSet<&str> =
        resources.iter().filter_map(|r| r["id"].as_str()).collect();
    for f in findings {
        let id = f["resource"].as_str().unwrap_or_default();
        assert!(ids.contains(id), "finding on an unknown resource: {f}");
    }
    for r in resources {
        assert!(
            r["region"].is_string() && r["id"].is_string(),
            "resource shape: {r}"
        );
    }
}

#[test]
fn scan_finds_exact_resources_and_findings() {
    let moto = Moto::start();
    let expected = moto.seed(&REGIONS, &[]);
    let (code, doc, stderr) = scan(&aws_env(&moto.endpoint()));
    assert_eq!(code, Some(3), "open findings exit 3: {stderr}");
    assert_scan_matches(&doc, &expected, &stderr);
}

#[test]
fn scan_backs_off_and_completes_when_the_api_throttles() {
    let moto = Moto::start();
    let expected = moto.seed(&REGIONS, &[]);
    let shim = ThrottlingShim::start(moto.port, 4);
    let endpoint = format!("http://127.0.0.1:{}", shim.port);
    let mut env = aws_env(&endpoint);
    env.push(("PALISADE__AWS__BACKOFF_BASE_MS".into(), "5".into()));
    env.push(("PALISADE__AWS__BACKOFF_CAP_MS".into(), "50".into()));
    let (code, doc, stderr) = scan(&env);
    assert_eq!(code, Some(3), "{stderr}");
    assert_scan_matches(&doc, &expected, &stderr);
    let throttled = shim.throttled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        throttled >= 5,
        "the shim throttled only {throttled} requests"
    );
}

#[test]
fn every_aws_call_goes_through_the_proxy_unless_no_proxy_says_otherwise() {
    let moto = Moto::start();
    let proxy = ForwardProxy::start();
    let secret = "pr0xy-s3cret-pw";
    let mut env = aws_env(&moto.endpoint());
    env.push((
        "http_proxy".into(),
        format!("http://alice:{secret}@127.0.0.1:{}", proxy.port),
    ));
    env.push(("RUST_LOG".into(), "debug".into()));
    let (code, doc, stderr) = scan(&env);
    assert!(
        matches!(code, Some(0 | 3)),
        "scan through the proxy: {stderr}"
    );
    assert!(
        doc["resources"].as_array().is_some_and(|r| !r.is_empty()),
        "{stderr}"
    );
    let seen = proxy.seen();
    assert!(seen.len() >= 10, "proxy saw {} requests", seen.len());
    let port = format!("127.0.0.1:{}", moto.port);
    assert!(
        seen.iter()
            .all(|s| s.method != "CONNECT" && s.target.contains(&port)),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|s| s
            .proxy_authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))),
        "every proxied request carries Proxy-Authorization: {seen:?}"
    );
    assert!(
        !stderr.contains(secret),
        "the proxy password reached the logs"
    );

    let before = proxy.seen().len();
    env.push(("no_proxy".into(), "localhost,127.0.0.1".into()));
    let (code, _, stderr) = scan(&env);
    assert!(
        matches!(code, Some(0 | 3)),
        "scan bypassing the proxy: {stderr}"
    );
    assert_eq!(proxy.seen().len(), before, "no_proxy must bypass the proxy");
}

/// The secret is nowhere in the bytes of the daemon's SQLite files (the database, its WAL,
/// its shared memory), while the key that sealed it was generated beside them, mode 0600.
fn assert_credentials_sealed_at_rest(daemon: &Daemon, secret: &str) {
    let data = daemon.dir().join("data");
    let mut files = 0;
    for name in ["palisade.db", "palisade.db-wal", "palisade.db-shm"] {
        let Ok(bytes) = std::fs::read(data.join(name)) else {
            continue;
        };
        files += 1;
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{name} holds the secret access key in plain text"
        );
    }
    assert!(files >= 1, "no database in {}", data.display());
    let key = data.join("credentials.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", key.display(), daemon.logs()))
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert!(
        daemon.logs().contains("generated the credentials key"),
        "{}",
        daemon.logs()
    );
}

#[test]
fn daemon_harvests_evaluates_and_serves_exact_counts() {
    let moto = Moto::start();
    let expected = moto.seed(&REGIONS, &[]);
    let mut daemon = Daemon::start(&aws_env(&moto.endpoint()));

    let body = json!({"provider": "aws", "name": "moto", "regions": REGIONS,
                      "credentials": {"kind": "keys", "access_key_id": "testing",
                                      "secret_access_key": "testing-secret-value"}});
    let (status, cloud) = daemon.request("POST", "/v2/clouds", Some(&body.to_string()));
    assert_eq!(status, 201, "{cloud}");
    assert!(!cloud.to_string().contains("testing-secret-value"));
    let id = cloud["id"].as_str().expect("cloud id").to_string();

    let (status, job) = daemon.request("POST", &format!("/v2/clouds/{id}/harvest"), None);
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().expect("job id").to_string();
    let done = daemon.wait_job(&job_id, Duration::from_secs(240));
    assert_eq!(done["state"], "done", "{done}");
    daemon.wait_idle(Duration::from_secs(120));
    assert_credentials_sealed_at_rest(&daemon, "testing-secret-value");

    for (rtype, n) in &expected.types {
        let page = daemon.get(&format!("/v2/resources?type={rtype}&limit=1"));
        assert_eq!(page["total"].as_u64(), Some(*n), "{rtype}: {page}");
    }
    let insights = daemon.get("/v2/insights");
    let mut open = BTreeMap::new();
    for i in insights["items"].as_array().expect("insight items") {
        let n = i["open_findings"].as_u64().unwrap_or(0);
        open.insert(i["id"].as_str().unwrap_or_default().to_string(), n);
    }
    assert_eq!(
        nonzero(&open),
        nonzero(&expected.insights),
        "open findings per insight"
    );
    for (insight, n) in nonzero(&expected.insights) {
        let page = daemon.get(&format!("/v2/insights/{insight}/findings?limit=1000"));
        assert_eq!(page["total"].as_u64(), Some(n), "{insight}");
        let first = &page["items"][0];
        let res = daemon.get(&format!(
            "/v2/resources/{}",
            first["resource_uid"].as_str().unwrap_or_default()
        ));
        assert!(
            res["findings"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x["insight"] == insight.as_str())),
            "resource carries its finding: {res}"
        );
    }

    // Malformed input: a 4xx with a JSON error body, never a crash.
    for (method, path, body) in [
        ("POST", "/v2/clouds", Some("{not json")),
        (
            "POST",
            "/v2/clouds",
            Some(
                r#"{"provider":"aws","name":"x","regions":["us-east-1"],"credentials":{"kind":"keys"}}"#,
            ),
        ),
        (
            "POST",
            "/v2/clouds",
            Some(
                r#"{"provider":"aws","name":"x","regions":["us-east-1"],"credentials":{"kind":"default"},"extra":1}"#,
            ),
        ),
        ("GET", "/v2/resources?limit=abc", None),
        ("GET", "/v2/resources?type=aws.nothing", None),
        ("GET", "/v2/jobs/does-not-exist", None),
        ("GET", "/v2/nowhere", None),
        ("POST", "/v2/clouds/does-not-exist/harvest", None),
    ] {
        let (status, err) = daemon.request(method, path, body);
        assert!((400..500).contains(&status), "{method} {path} -> {status}");
        assert!(
            err["code"].is_string() && err["message"].is_string(),
            "{method} {path}: {err}"
        );
    }
    assert_eq!(daemon.get("/healthz")["status"], "ok");

    // Graceful shutdown: a harvest running at SIGTERM finishes, then the daemon exits 0.
    let (_, job) = daemon.request("POST", &format!("/v2/clouds/{id}/harvest"), None);
    let job_id = job["job_id"].as_str().expect("job id").to_string();
    std::thread::sleep(Duration::from_millis(300));
    let status = daemon.terminate(Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{}", daemon.logs());
    let logs = daemon.logs();
    assert!(logs.contains("draining"), "{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("job done") && l.contains(&job_id)),
        "the running harvest finished before exit: {logs}"
    );
}

#[test]
fn a_panicking_harvester_is_restarted_and_the_daemon_keeps_serving() {
    let moto = Moto::start();
    let mut env = aws_env(&moto.endpoint());
    env.push(("PALISADE_FAULT_HARVEST_PANIC".into(), "eu-west-1".into()));
    let mut daemon = Daemon::start(&env);
    let body = json!({"provider": "aws", "name": "p", "regions": ["us-east-1", "eu-west-1"],
                      "credentials": {"kind": "default"}});
    let (status, cloud) = daemon.request("POST", "/v2/clouds", Some(&body.to_string()));
    assert_eq!(status, 201, "{cloud}");
    let id = cloud["id"].as_str().expect("id").to_string();

    let (_, job) = daemon.request("POST", &format!("/v2/clouds/{id}/harvest"), None);
    let first = daemon.wait_job(
        job["job_id"].as_str().expect("job"),
        Duration::from_secs(120),
    );
    assert_eq!(first["state"], "failed", "{first}");
    assert!(
        first["error"].as_str().is_some_and(|e| e.contains("crash")),
        "{first}"
    );

    // The supervisor restarts the harvester; the next harvest succeeds.
    let mut second = Value::Null;
    for _ in 0..50 {
        let (_, job) = daemon.request("POST", &format!("/v2/clouds/{id}/harvest"), None);
        second = daemon.wait_job(
            job["job_id"].as_str().expect("job"),
            Duration::from_secs(120),
        );
        if second["state"] == "done" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(second["state"], "done", "{second}\n{}", daemon.logs());
    let logs = daemon.logs();
    assert!(logs.contains("role actor crashed"), "{logs}");
    assert!(logs.contains("role actor restarted"), "{logs}");
    assert_eq!(daemon.get("/healthz")["status"], "ok");
    assert_eq!(daemon.terminate(Duration::from_secs(60)).code(), Some(0));
}

#[test]
fn a_bad_configuration_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = palisade_command()
        .current_dir(dir.path())
        .arg("validate")
        .env("PALISADE__HTTP__BINDD", "127.0.0.1:1")
        .output()
        .expect("run validate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http.bindd"), "{stderr}");

    std::fs::create_dir(dir.path().join("conf")).expect("conf dir");
    std::fs::write(
        dir.path().join("conf/local.toml"),
        "[scheduler]\nworkers = \"many\"\n",
    )
    .expect("write");
    let out = palisade_command()
        .current_dir(dir.path())
        .arg("run")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "run refuses a bad configuration"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("workers"), "{stderr}");

    let ok = palisade_command()
        .current_dir(dir.path())
        .arg("validate")
        .env("PALISADE_CONF_DIR", "/nonexistent")
        .output()
        .expect("validate");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // a MySQL store (a cluster's) without a credentials key is refused by name
    let out = palisade_command()
        .current_dir(dir.path())
        .arg("validate")
        .env("PALISADE_CONF_DIR", "/nonexistent")
        .env("PALISADE__STORE__URL", "mysql://root@127.0.0.1:3306/test")
        .output()
        .expect("validate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("store.credentials_key"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    // an embedded store that cannot be opened is an error at once, not a retry loop
    let out = palisade_command()
        .current_dir(dir.path())
        .arg("run")
        .env("PALISADE_CONF_DIR", "/nonexistent")
        .env(
            "PALISADE__STORE__URL",
            "sqlite:///proc/no-such-dir/palisade.db",
        )
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("store"), "{stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
}

#[test]
fn a_reload_applies_the_log_level_names_what_needs_a_restart_and_refuses_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env_file = dir.path().join("palisade.env");
    std::fs::write(&env_file, "PALISADE__LOG__LEVEL=info\n").expect("env file");
    let daemon = Daemon::start(&[
        (
            "PALISADE_ENV_FILE".to_string(),
            env_file.display().to_string(),
        ),
        // empty: log.level decides
        ("RUST_LOG".to_string(), String::new()),
    ]);
    daemon.get("/healthz");
    assert!(
        !daemon.logs().contains("http request"),
        "no debug lines at info"
    );

    std::fs::write(
        &env_file,
        "PALISADE__LOG__LEVEL=debug\nPALISADE__SCHEDULER__WORKERS=7\n",
    )
    .expect("env file");
    let (status, _) = daemon.request("POST", "/v2/cluster/reload", None);
    assert_eq!(status, 202);
    let logs = daemon.wait_log("configuration reloaded", Duration::from_secs(10));
    assert!(logs.contains("log.level is now"), "{logs}");
    assert!(
        logs.contains("applied at the next restart: scheduler"),
        "{logs}"
    );
    daemon.get("/healthz");
    daemon.wait_log("http request", Duration::from_secs(5));

    // a broken file changes nothing, and the node keeps serving
    std::fs::write(&env_file, "PALISADE__NOPE=1\n").expect("env file");
    daemon.hangup();
    let logs = daemon.wait_log("configuration reload refused", Duration::from_secs(10));
    assert!(logs.contains("nope"), "the refusal names the key: {logs}");
    assert_eq!(daemon.get("/healthz")["status"], "ok");
}
