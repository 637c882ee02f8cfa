//! What the benchmarks share: a moto server of their own, seeding it with the estate
//! (`integration/estate.py`), and the variables a daemon under test must not inherit.
//!
//! Must never: assert on a figure, or leave a process behind (children are killed on drop).
#![allow(clippy::print_stdout)] // load generators print their progress

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The regions the benchmark estates are seeded in.
pub const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

/// Variables the daemon must not inherit from the caller's shell.
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
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "PALISADE_CONF_DIR",
    "PALISADE_ENV_FILE",
    "RUST_LOG",
    "STAGE",
];

/// The Python with moto and boto3: `PALISADE_TEST_PYTHON`, else
/// `~/.cache/palisade/test-venv/bin/python` when it exists, else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("PALISADE_TEST_PYTHON") {
        return p;
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(".cache/palisade/test-venv/bin/python");
        if venv.exists() {
            return venv.display().to_string();
        }
    }
    "python3".into()
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed (and reaped) on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A moto server on a free loopback port, killed on drop.
pub struct Moto {
    _child: Reaped,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Result<Moto> {
        let port = free_port()?;
        let child = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start moto with {}", python()))?;
        let moto = Moto {
            _child: Reaped(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/moto-api/", moto.endpoint()))
            .timeout(Duration::from_secs(2))
            .call()
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("moto did not come up on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Seed the estate; returns the resource counts per type estate.py read back.
pub fn seed(root: &Path, endpoint: &str, scale: u64) -> Result<BTreeMap<String, u64>> {
    println!("seeding {endpoint} (sequential writes; minutes at the default scale)");
    let out = Command::new(python())
        .arg(root.join("integration/estate.py"))
        .args(["--endpoint", endpoint, "--regions", &REGIONS.join(",")])
        .args(["--scale", &scale.to_string()])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .stderr(Stdio::inherit())
        .output()
        .context("run estate.py")?;
    if !out.status.success() {
        bail!("estate.py failed ({})", out.status);
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("estate.py output")?;
    Ok(counts(&v["types"]))
}

pub fn counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Run `benches/walk.py` (the minimal sequential walk of the estate) against `endpoint` and
/// return what it printed.
pub fn walk_json(root: &Path, endpoint: &str) -> Result<Value> {
    let out = Command::new(python())
        .arg(root.join("benches/walk.py"))
        .args(["--endpoint", endpoint, "--regions", &REGIONS.join(",")])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .stderr(Stdio::inherit())
        .output()
        .context("run walk.py")?;
    if !out.status.success() {
        bail!("walk.py failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("walk.py output")
}

/// Host and port of a `redis://[user:pass@]host[:port][/db]` URL.
pub fn host_port(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (hostport.to_string(), "6379".to_string()),
    }
}

/// A `redis-cli` command aimed at the server `url` names.
pub fn redis_cli(url: &str) -> Command {
    let (host, port) = host_port(url);
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", &host, "-p", &port]);
    cmd
}

/// Where a benchmark runs from: the workspace root and its target directory
/// (`CARGO_TARGET_DIR`, else `<root>/target`).
pub struct Workspace {
    pub root: std::path::PathBuf,
    pub target: std::path::PathBuf,
}

impl Workspace {
    pub fn locate() -> Workspace {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let root = root.canonicalize().unwrap_or(root);
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Workspace { root, target }
    }

    /// Build the release `palisade` (`cargo build --release --locked -p palisade`) and
    /// return its path.
    pub fn release_daemon(&self) -> Result<std::path::PathBuf> {
        println!("building the release daemon (cargo build --release -p palisade)");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--release", "--locked", "-p", "palisade"])
            .current_dir(&self.root)
            .status()
            .context("run cargo build")?;
        if !built.success() {
            bail!("cargo build --release -p palisade failed");
        }
        Ok(self.target.join("release/palisade"))
    }
}
