//! Tidy checks over the source tree: every Rust file opens with a `//!` header that says
//! what it is for, and no test is switched off with an ignore attribute; the systemd units
//! carry the directives a deployment relies on and validate with `conf/live.toml`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["proto", "actors", "daemon", "integration", "benches"] {
        rust_files(&crate::support::root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "tidy found only {} files", files.len());
    files
}

#[test]
fn every_rust_file_has_a_module_header() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text
                .lines()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.starts_with("//!"))
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:#?}"
    );
}

#[test]
fn no_test_is_ignored() {
    let marker = concat!("#[", "ignore");
    let ignored: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(marker)
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(ignored.is_empty(), "ignored tests: {ignored:#?}");
}

/// One unit file: `(section, key, value)` in file order (keys repeat, e.g. `Environment=`).
struct Unit {
    name: String,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    fn parse(path: &Path) -> Unit {
        let text = std::fs::read_to_string(path).expect("read unit");
        let mut section = String::new();
        let mut entries = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not KEY=VALUE: {line}", path.display()));
            entries.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Unit { name, entries }
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(_, k, _)| k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    fn one(&self, key: &str) -> &str {
        match self.all(key).as_slice() {
            [v] => v,
            other => panic!("{}: {key}= expected once, found {other:?}", self.name),
        }
    }

    fn words(&self, key: &str) -> Vec<&str> {
        self.all(key)
            .into_iter()
            .flat_map(str::split_whitespace)
            .collect()
    }

    /// The `Environment=` assignments with the specifiers `%H` and `%i` filled in.
    fn environment(&self) -> Vec<(String, String)> {
        self.all("Environment")
            .into_iter()
            .map(|a| {
                let a = a.replace("%H", "host1").replace("%i", "2");
                let (k, v) = a.split_once('=').expect("Environment=KEY=VALUE");
                (k.to_string(), v.to_string())
            })
            .collect()
    }
}

/// `palisade validate` over the repository's conf/ with `env`: (exit code, stderr).
fn validate(env: &[(String, String)]) -> (Option<i32>, String) {
    let mut cmd = crate::support::palisade_command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    // the repository's conf/ stands in for /etc/palisade
    cmd.env("PALISADE_CONF_DIR", crate::support::root().join("conf"));
    let out = cmd.arg("validate").output().expect("run palisade validate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn systemd_units_are_complete() {
    let root = crate::support::root();
    let dir = root.join("systemd");
    for name in [
        "palisade.service",
        "palisade-scheduler.service",
        "palisade-worker@.service",
        "palisade-interface.service",
        "palisade-migrate.service",
        "palisade.target",
    ] {
        assert!(dir.join(name).is_file(), "systemd/{name} is missing");
    }
    let mut units: Vec<Unit> = std::fs::read_dir(&dir)
        .expect("read systemd/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .map(|p| Unit::parse(&p))
        .collect();
    units.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        units.len(),
        5,
        "units: {:?}",
        units.iter().map(|u| &u.name).collect::<Vec<_>>()
    );

    // the drain must fit in the stop timeout (live.toml's grace, else default.toml's)
    let grace = ["live.toml", "default.toml"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(root.join("conf").join(f)).ok())
        .filter_map(|t| t.parse::<toml::Table>().ok())
        .filter_map(|t| t.get("scheduler")?.get("shutdown_grace_secs")?.as_integer())
        .next()
        .expect("scheduler.shutdown_grace_secs in conf/");
    let key = tempfile::NamedTempFile::new().expect("key file");
    std::fs::write(key.path(), "0123456789abcdef-tidy-cluster-key\n").expect("write key");
    let credentials_key = tempfile::NamedTempFile::new().expect("credentials key file");
    std::fs::write(credentials_key.path(), format!("{}\n", "5a".repeat(32))).expect("write key");

    for u in &units {
        let n = &u.name;
        let oneshot = u.one("Type") == "oneshot";
        let single = n == "palisade.service";
        for (k, v) in [
            ("User", "palisade"),
            ("EnvironmentFile", "-/etc/palisade/palisade.env"),
            ("ExecStartPre", "/usr/bin/palisade validate"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectControlGroups", "yes"),
            ("RestrictSUIDSGID", "yes"),
            ("LockPersonality", "yes"),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("MemoryDenyWriteExecute", "yes"),
            ("SystemCallArchitectures", "native"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(u.one(k), v, "{n}: {k}=");
        }
        let env = u.environment();
        for (k, v) in [("STAGE", "live"), ("PALISADE_CONF_DIR", "/etc/palisade")] {
            assert!(
                env.iter().any(|(ek, ev)| ek == k && ev == v),
                "{n}: Environment={k}={v}"
            );
        }
        assert!(
            u.words("Wants").contains(&"network-online.target"),
            "{n}: Wants="
        );
        assert!(
            u.words("After").contains(&"network-online.target"),
            "{n}: After="
        );
        for w in u.words("Wants") {
            assert!(
                !w.starts_with("mariadb") && !w.starts_with("redis"),
                "{n}: Wants={w}: the backends may live elsewhere"
            );
        }
        if oneshot {
            assert_eq!(u.one("ExecStart"), "/usr/bin/palisade migrate", "{n}");
            assert!(
                u.all("Restart").is_empty() && u.all("WatchdogSec").is_empty(),
                "{n}"
            );
        } else {
            assert_eq!(u.one("Type"), "notify", "{n}: Type=");
            assert_eq!(u.one("NotifyAccess"), "main", "{n}: NotifyAccess=");
            assert_eq!(u.one("ExecStart"), "/usr/bin/palisade run", "{n}");
            assert!(!u.one("WatchdogSec").is_empty(), "{n}: WatchdogSec=");
            assert_eq!(u.one("Restart"), "on-failure", "{n}: Restart=");
            assert!(!u.one("RestartSec").is_empty(), "{n}: RestartSec=");
            let stop: i64 = u
                .one("TimeoutStopSec")
                .parse()
                .expect("TimeoutStopSec in seconds");
            assert!(
                stop > grace,
                "{n}: TimeoutStopSec={stop} must exceed the {grace}s grace"
            );
        }
        if !single {
            for w in ["mariadb.service", "network-online.target"] {
                assert!(u.words("After").contains(&w), "{n}: After={w}");
            }
        }
        if !single && !oneshot {
            for w in ["redis-server.service", "palisade-migrate.service"] {
                assert!(u.words("After").contains(&w), "{n}: After={w}");
            }
            assert!(
                u.words("Wants").contains(&"palisade-migrate.service"),
                "{n}: Wants="
            );
            assert!(
                env.iter().any(|(k, _)| k == "PALISADE__NODE__ROLES"),
                "{n}: node.roles"
            );
            assert!(
                env.iter().any(|(k, _)| k == "PALISADE__NODE__ID"),
                "{n}: node.id"
            );
            assert_eq!(u.one("WantedBy"), "palisade.target", "{n}");
        }

        // conf/live.toml plus the unit's environment validates; cluster units add the key
        let mut env = env;
        if !single {
            let path = key.path().display().to_string();
            env.push(("PALISADE__CLUSTER__SECRET_FILE".into(), path));
            let path = credentials_key.path().display().to_string();
            env.push(("PALISADE__STORE__CREDENTIALS_KEY_FILE".into(), path));
        }
        let (code, stderr) = validate(&env);
        assert_eq!(code, Some(0), "{n}: palisade validate: {stderr}");
        assert!(stderr.contains("stage live"), "{n}: {stderr}");
    }

    let worker = units
        .iter()
        .find(|u| u.name == "palisade-worker@.service")
        .expect("worker unit");
    let env = worker.environment();
    assert!(
        env.contains(&("PALISADE__NODE__ID".into(), "host1-worker-2".into())),
        "worker instances need distinct ids: {env:?}"
    );
    assert!(env.contains(&("PALISADE__NODE__ROLES".into(), "worker".into())));
    // broken variants exit 2 and name the key
    let secret = (
        "PALISADE__CLUSTER__SECRET".to_string(),
        "0123456789abcdef0123".to_string(),
    );
    for (k, v, named) in [
        (
            "PALISADE__STORE__URL",
            "sqlite:///var/lib/palisade/palisade.db",
            "store.url",
        ),
        ("PALISADE__QUEUE__LEASE", "5", "queue.lease"),
        ("PALISADE__CLUSTER__SECRET", "short", "cluster.secret"),
    ] {
        let mut broken = env.clone();
        broken.push(secret.clone());
        broken.push((k.to_string(), v.to_string()));
        let (code, stderr) = validate(&broken);
        assert_eq!(code, Some(2), "{k}={v} must be refused: {stderr}");
        assert!(stderr.contains(named), "{k}={v}: {stderr}");
        assert!(
            !stderr.contains("0123456789abcdef"),
            "the secret leaked: {stderr}"
        );
    }
    // the brief's own check: live.toml with a secret in the environment (and the credentials
    // key, which wins over live.toml's key file)
    let credentials = (
        "PALISADE__STORE__CREDENTIALS_KEY".to_string(),
        "a5".repeat(32),
    );
    let (code, stderr) = validate(&[("STAGE".into(), "live".into()), secret.clone(), credentials]);
    assert_eq!(code, Some(0), "{stderr}");
    // live.toml's key file must exist and hold a key
    let (code, stderr) = validate(&[("STAGE".into(), "live".into()), secret]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("store.credentials_key_file"), "{stderr}");
}
