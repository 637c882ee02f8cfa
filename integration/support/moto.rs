//! A moto server of the test's own on a free loopback port, killed on drop, and the
//! estate seeder (`integration/estate.py`) that fills it.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, python, root};

pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    /// Start moto and wait until it answers. Fails loudly: moto is part of the test bed.
    pub fn start() -> Moto {
        let port = free_port();
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
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto with {}: {e} (run the README's test command)",
                    python()
                )
            });
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ureq::get(&format!("{}/moto-api/", moto.endpoint()))
                .timeout(Duration::from_secs(2))
                .call()
                .is_ok()
            {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Seed the estate and return what Palisade must find.
    pub fn seed(&self, regions: &[&str], extra: &[&str]) -> Expected {
        let out = Command::new(python())
            .arg(root().join("integration/estate.py"))
            .args([
                "--endpoint",
                &self.endpoint(),
                "--regions",
                &regions.join(","),
            ])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("run estate.py");
        assert!(
            out.status.success(),
            "estate.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "estate.py printed no expectation ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What estate.py says Palisade must find.
#[derive(Debug, serde::Deserialize)]
pub struct Expected {
    pub types: BTreeMap<String, u64>,
    pub insights: BTreeMap<String, u64>,
}
