//! The real `palisade` daemon as a child process, with its own data directory and port.
//! Every node starts with the bootstrap API key [`ADMIN_KEY`], and [`Daemon::get`] and
//! [`Daemon::request`] send it as `Api-Key`.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, palisade_command};

/// The bootstrap (admin) API key every test daemon starts with.
pub const ADMIN_KEY: &str = "integration-admin-key-0123456789";

pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    /// The daemon's working directory (its data lives here); removed on drop.
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Daemon {
    /// Start `palisade run` with `env` on top of a test configuration, and wait for /healthz.
    pub fn start(env: &[(String, String)]) -> Daemon {
        let d = Daemon::spawn(env);
        d.wait_healthy();
        d
    }

    /// Start a node without the interface role, and wait until its supervisor logs that it
    /// started.
    pub fn start_headless(env: &[(String, String)]) -> Daemon {
        let mut d = Daemon::spawn(env);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.logs().contains("supervisor started") {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("palisade exited early ({status}): {}", d.logs());
            }
            assert!(
                Instant::now() < deadline,
                "node never started: {}",
                d.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// Send SIGHUP (reload the configuration).
    pub fn hangup(&self) {
        if let Some(c) = &self.child {
            let _ = std::process::Command::new("kill")
                .args(["-HUP", &c.id().to_string()])
                .status();
        }
    }

    /// Wait until the log holds `needle`; panics with the log after `limit`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log: {logs}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start a node and return at once, ready or not.
    pub fn start_headless_unready(env: &[(String, String)]) -> Daemon {
        Daemon::spawn(env)
    }

    /// SIGKILL: the node dies on the spot, as in a power loss.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spawn(env: &[(String, String)]) -> Daemon {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("palisade.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = palisade_command();
        cmd.arg("run")
            .current_dir(dir.path())
            .env("STAGE", "test")
            .env("RUST_LOG", "info,palisade_actors=debug")
            .env("PALISADE__HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("PALISADE__SCHEDULER__HARVEST_INTERVAL_SECS", "0")
            .env("PALISADE__SCHEDULER__COMPLIANCE_INTERVAL_SECS", "0")
            .env("PALISADE__SUPERVISOR__RESTART_BACKOFF_INITIAL_MS", "100")
            .env("PALISADE__AUTH__BOOTSTRAP_API_KEY", ADMIN_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn palisade");
        Daemon {
            child: Some(child),
            port,
            _dir: dir,
            log,
        }
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = ureq::get(&self.url("/healthz")).call() {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "palisade not healthy: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// The daemon's working directory.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// GET a JSON document; panics with the logs on a non-2xx answer.
    pub fn get(&self, path: &str) -> serde_json::Value {
        match ureq::get(&self.url(path)).set("Api-Key", ADMIN_KEY).call() {
            Ok(r) => r.into_json().expect("json body"),
            Err(e) => panic!("GET {path}: {e}\n{}", self.logs()),
        }
    }

    /// Any request; returns (status, JSON body or null).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let req = ureq::request(method, &self.url(path))
            .set("Content-Type", "application/json")
            .set("Api-Key", ADMIN_KEY);
        let res = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}\n{}", self.logs()),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Add a user with `palisade user add NAME --role ROLE` in the daemon's directory (same
    /// store), the password on stdin; panics with its stderr when that fails.
    pub fn add_user(&self, name: &str, role: &str, password: &str) {
        use std::io::Write;
        let mut child = palisade_command()
            .current_dir(self.dir())
            .env("STAGE", "test")
            .args(["user", "add", name, "--role", role])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn palisade user add");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("write the password");
        let out = child.wait_with_output().expect("palisade user add");
        assert!(
            out.status.success(),
            "palisade user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Poll a job until it finishes; returns its final document.
    pub fn wait_job(&self, id: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let job = self.get(&format!("/v2/jobs/{id}"));
            if matches!(job["state"].as_str(), Some("done" | "failed")) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not finish: {job}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the queue is empty and nothing runs.
    pub fn wait_idle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let q = self.get("/v2/jobs/queues");
            let busy: u64 = ["p0", "p1", "p2"]
                .iter()
                .map(|p| {
                    q[p]["depth"].as_u64().unwrap_or(0) + q[p]["running"].as_u64().unwrap_or(0)
                })
                .sum();
            if busy == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "queue never idle: {q}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running daemon");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("palisade did not exit after SIGTERM: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
