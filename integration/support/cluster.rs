//! A cluster on loopback for the tests: a scratch MariaDB database, a Redis key prefix (or a
//! private Redis server that a test may restart), a cluster secret, and the environment
//! that makes `palisade` nodes of them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// The MariaDB server the tests use (`PALISADE_TEST_MYSQL_URL`'s host, port and user).
const MYSQL_HOST: &str = "127.0.0.1";
const MYSQL_PORT: &str = "3306";

/// The shared Redis (`PALISADE_TEST_REDIS_URL`, default 127.0.0.1:6379).
pub fn shared_redis_url() -> String {
    std::env::var("PALISADE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Run one SQL statement as root on the test server; panics loudly when it is not there.
fn mysql(sql: &str) {
    let out = Command::new("mysql")
        .args(["-h", MYSQL_HOST, "-P", MYSQL_PORT, "-u", "root", "-e", sql])
        .output()
        .expect("the mysql client (mariadb-client) must be installed");
    assert!(
        out.status.success(),
        "mysql {sql:?} failed (is MariaDB running on {MYSQL_HOST}:{MYSQL_PORT}?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database of its own on the test MariaDB, dropped at the end.
pub struct ScratchDb {
    pub name: String,
}

impl ScratchDb {
    pub fn new() -> ScratchDb {
        let name = format!("palisade_it_{}", uuid_hex());
        mysql(&format!("CREATE DATABASE {name}"));
        ScratchDb { name }
    }

    pub fn url(&self) -> String {
        format!("mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{}", self.name)
    }

    /// One number a query on this database returns.
    pub fn scalar(&self, sql: &str) -> i64 {
        let out = Command::new("mysql")
            .args(["-h", MYSQL_HOST, "-P", MYSQL_PORT, "-u", "root", "-N", "-B"])
            .arg(&self.name)
            .args(["-e", sql])
            .output()
            .expect("mysql client");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{sql} returned no number"))
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = Command::new("mysql")
            .args(["-h", MYSQL_HOST, "-P", MYSQL_PORT, "-u", "root", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {}", self.name))
            .status();
    }
}

fn uuid_hex() -> String {
    let mut bytes = [0u8; 8];
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (t >> (i * 8)) as u8 ^ (std::process::id() >> (i % 4 * 8)) as u8;
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Redis server of the test's own, on a free port, with an append-only file so that a
/// restart keeps what it held (as a production Redis with persistence does).
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = PrivateRedis {
            child: None,
            port: free_port(),
            dir,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (the test runner installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stop the server (SIGKILL), wait `down`, start it again on the same port and data.
    pub fn restart(&mut self, down: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(down);
        self.spawn();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `redis-cli` against `url`'s port with `args`; returns its trimmed output.
pub fn redis_cli(url: &str, args: &[&str]) -> String {
    let port = url
        .rsplit(':')
        .next()
        .unwrap_or("6379")
        .trim_end_matches('/');
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", port])
        .args(args)
        .output()
        .expect("redis-cli must be installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The key every node of a test cluster seals cloud credentials with (64 hex characters).
pub const CREDENTIALS_KEY: &str =
    "6a1f0c9e3b7d4a2f8e5c1b0d9a7f3e6c2b8d4f1a0e9c7b5d3f2a1e0c8b6d4f2a";

/// The environment of one node of a cluster on `db_url` and `redis_url`, with `roles`.
pub fn node_env(
    node: &str,
    roles: &str,
    db_url: &str,
    redis_url: &str,
    prefix: &str,
) -> Vec<(String, String)> {
    [
        ("PALISADE__NODE__ID", node),
        ("PALISADE__NODE__ROLES", roles),
        ("PALISADE__STORE__URL", db_url),
        ("PALISADE__STORE__CREDENTIALS_KEY", CREDENTIALS_KEY),
        ("PALISADE__REDIS__URL", redis_url),
        ("PALISADE__REDIS__PREFIX", prefix),
        (
            "PALISADE__CLUSTER__SECRET",
            "integration-cluster-secret-0123",
        ),
        ("PALISADE__CLUSTER__HEARTBEAT_SECS", "1"),
        ("PALISADE__CLUSTER__LEADER_LEASE_SECS", "2"),
        ("PALISADE__QUEUE__LEASE_SECS", "2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A fresh key prefix for one test's cluster on a shared Redis.
pub fn fresh_prefix() -> String {
    format!("palisade-it-{}:", uuid_hex())
}

/// Run `palisade migrate` against `db_url`; panics with its output on failure.
pub fn migrate(db_url: &str) {
    let out = super::palisade_command()
        .arg("migrate")
        .env("PALISADE__STORE__URL", db_url)
        .env("PALISADE__STORE__CREDENTIALS_KEY", CREDENTIALS_KEY)
        .output()
        .expect("run palisade migrate");
    assert!(
        out.status.success(),
        "palisade migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP relay on loopback in front of a server, that a test can cut (every connection
/// reset, new ones refused) and restore: the server "unreachable for a while".
pub struct TcpRelay {
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl TcpRelay {
    /// Relay a free loopback port to `target` (`host:port`).
    pub fn start(target: &str) -> TcpRelay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let relay = TcpRelay {
            port,
            down: Default::default(),
            conns: Default::default(),
        };
        let (down, conns, target) = (relay.down.clone(), relay.conns.clone(), target.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let pipes = [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ];
                if let Ok(mut all) = conns.lock() {
                    all.extend([client, server]);
                }
                for (from, to) in pipes {
                    if let (Ok(mut from), Ok(mut to)) = (from, to) {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            }
        });
        relay
    }

    /// Reset every connection and refuse new ones until [`TcpRelay::restore`].
    pub fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut all) = self.conns.lock() {
            for c in all.drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    pub fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
