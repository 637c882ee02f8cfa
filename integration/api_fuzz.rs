//! The REST API against its own OpenAPI document: schemathesis (in the test venv) generates
//! requests from `/v2/openapi.json`, valid and invalid, against the real daemon holding a
//! harvested estate, and checks that no answer is a 5xx and that every answer's status,
//! content type and body are the ones the document declares.
//!
//! Schemathesis learns ids from the answers it gets, so its `DELETE /v2/clouds/{id}` can
//! remove the estate: every other operation runs first, on the full estate, then the
//! deletions, and the daemon must still serve afterwards.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::daemon::Daemon;
use crate::support::moto::Moto;
use crate::support::{aws_env, python};

/// Examples per operation and phase: enough to reach every parameter and body shape, few
/// enough to keep the run near a minute on two cores.
const EXAMPLES: &str = "50";

/// Run schemathesis against `daemon`'s document with `headers` (`Name: value`) on every
/// request and `extra` arguments (operation filters); returns (success, output).
pub fn run_schemathesis(daemon: &Daemon, headers: &[String], extra: &[&str]) -> (bool, String) {
    // schemathesis keeps a cache in its working directory: not in the source tree
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(python());
    cmd.current_dir(scratch.path())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(daemon.url("/v2/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,\
             content_type_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            EXAMPLES,
            "--seed",
            "20261130",
            "--generation-database",
            "none",
            // one worker: hypothesis's lambda descriptions parse source with `ast`, which
            // CPython 3.11 can break in concurrently ("AST constructor recursion depth
            // mismatch"), failing a run for no fault of the API
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
            "--output-truncate",
            "true",
        ])
        .env("NO_COLOR", "1");
    for h in headers {
        cmd.args(["--header", h]);
    }
    cmd.args(extra);
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run schemathesis with {}: {e} (run integration/run-tests.sh, which installs it)",
            python()
        )
    });
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let moto = Moto::start();
    let _expected = moto.seed(&["us-east-1"], &[]);
    let daemon = Daemon::start(&aws_env(&moto.endpoint()));

    // an estate, so that lists, resources and findings are not empty
    let body = json!({"provider": "aws", "name": "fuzzed", "regions": ["us-east-1"],
                      "credentials": {"kind": "keys", "access_key_id": "testing",
                                      "secret_access_key": "testing-secret"}});
    let (status, cloud) = daemon.request("POST", "/v2/clouds", Some(&body.to_string()));
    assert_eq!(status, 201, "{cloud}");
    let id = cloud["id"].as_str().expect("cloud id").to_string();
    let (status, job) = daemon.request("POST", &format!("/v2/clouds/{id}/harvest"), None);
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().expect("job id");
    let done = daemon.wait_job(job_id, Duration::from_secs(240));
    assert_eq!(done["state"], "done", "{done}");
    daemon.wait_idle(Duration::from_secs(120));
    let resources = daemon.get("/v2/resources?limit=1");
    assert!(resources["total"].as_u64() > Some(0), "{resources}");

    let doc = daemon.get("/v2/openapi.json");
    let operations: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |m| m.len()))
        .sum();

    let started = Instant::now();
    let mut tested = 0;
    for filter in [
        ["--exclude-method", "DELETE"],
        ["--include-method", "DELETE"],
    ] {
        let (ok, output) = run_schemathesis(
            &daemon,
            &[format!("Api-Key: {}", crate::support::daemon::ADMIN_KEY)],
            &filter,
        );
        assert!(
            ok,
            "schemathesis ({}) found problems:\n{output}\n--- daemon log tail ---\n{}",
            filter.join(" "),
            tail(&daemon.logs(), 60)
        );
        tested += output
            .lines()
            .find_map(|l| l.trim().strip_prefix("Tested: "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no summary from schemathesis:\n{output}"));
        eprintln!(
            "schemathesis {} passed:\n{}",
            filter.join(" "),
            tail(&output, 22)
        );
    }
    eprintln!(
        "schemathesis runs took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // schemathesis leaves out the document's own operation
    assert_eq!(
        tested,
        operations - 1,
        "schemathesis must test every operation"
    );

    // the daemon survived and still answers from its store
    assert_eq!(daemon.get("/healthz")["status"], "ok");
    assert_eq!(daemon.get("/readyz")["status"], "ready");
    let after = daemon.get("/v2/resources?limit=1");
    assert!(after["total"].is_u64(), "{after}");
    let logs = daemon.logs();
    assert!(!logs.contains("panicked"), "{}", tail(&logs, 60));
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
