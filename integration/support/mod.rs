//! Shared test support: the moto server, the estate seeder, the daemon under test, and a
//! small forward proxy and throttling shim that sit between Palisade and moto, and a
//! WebDriver client for headless Chromium.

pub mod cluster;
pub mod daemon;
pub mod moto;
pub mod proxy;
pub mod webdriver;

use std::net::TcpListener;
use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The Python that has moto and boto3: `PALISADE_TEST_PYTHON`, else the workspace venv,
/// else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("PALISADE_TEST_PYTHON") {
        return p;
    }
    let venv = root().join(".venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".to_string()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The path of the `palisade` binary cargo built for these tests.
pub fn palisade_bin() -> &'static str {
    env!("CARGO_BIN_EXE_palisade")
}

/// Environment that points the AWS harvester at `endpoint` with moto's test credentials.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Variables a test must not inherit from the developer's shell.
pub const SCRUBBED_ENV: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "PALISADE_CONF_DIR",
    "PALISADE_ENV_FILE",
    "RUST_LOG",
    "STAGE",
];

/// A `Command` for the palisade binary with a scrubbed environment.
pub fn palisade_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(palisade_bin());
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
