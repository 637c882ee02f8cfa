//! Layered configuration: embedded defaults, the conf directory's `default.toml` and
//! `<STAGE>.toml`, an env file, then `PALISADE__SECTION__KEY` variables.
//!
//! Owns: finding the sources, merging them, and refusing unknown keys by name.
//! Must never: default a key in code (every default is in `conf/default.toml`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat, Map, Value, ValueKind};
use palisade_actors::settings::{Settings, DEFAULT_TOML};

/// Stages the binary knows; `STAGE` picks one, `local` when unset.
pub const STAGES: [&str; 3] = ["local", "test", "live"];

/// Keys whose environment values are comma-separated lists.
const LIST_KEYS: [&str; 3] = [
    "node.roles",
    "compliance.required_tags",
    "http.trusted_proxies",
];

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("unknown STAGE {0:?}: expected local, test or live")]
    Stage(String),
    #[error("unknown configuration key `{0}`")]
    UnknownKey(String),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("env file {path} line {line}: expected KEY=VALUE")]
    EnvFileLine { path: String, line: usize },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A loaded, validated configuration and where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub stage: String,
    /// The sources merged, in order, for the start-up log line.
    pub sources: Vec<String>,
}

/// Where to look: explicit flags win over the environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub conf_dir: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
}

/// The conf directory: the flag, else `PALISADE_CONF_DIR`, else `./conf`, else `/etc/palisade`.
fn conf_dir(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = flag {
        return Some(dir.to_path_buf());
    }
    if let Ok(dir) = std::env::var("PALISADE_CONF_DIR") {
        if !dir.is_empty() {
            return Some(PathBuf::from(dir));
        }
    }
    ["conf", "/etc/palisade"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
}

/// Parse an env file: `KEY=VALUE` lines, `#` comments, optional `export `, optional quotes.
pub fn parse_env_file(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfError::EnvFileLine {
                path: path.display().to_string(),
                line: i + 1,
            });
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        out.push((key.trim().to_string(), value.to_string()));
    }
    Ok(out)
}

fn flatten(prefix: &str, map: &Map<String, Value>, out: &mut BTreeSet<String>) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match &v.kind {
            ValueKind::Table(t) => flatten(&key, t, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

fn keys_of(config: &Config) -> Result<BTreeSet<String>, ConfError> {
    let map: Map<String, Value> = config
        .clone()
        .try_deserialize()
        .map_err(|e| ConfError::Invalid(e.to_string()))?;
    let mut keys = BTreeSet::new();
    flatten("", &map, &mut keys);
    Ok(keys)
}

/// Load, merge and validate the configuration.
///
/// `env` is the process environment (passed in so tests need not mutate it). Variables of
/// the env file that are not already set are returned in `Loaded`-independent form through
/// `apply_env_file`; this function only reads.
pub fn load(sources: &Sources, env: &[(String, String)]) -> Result<Loaded, ConfError> {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let stage = get("STAGE").unwrap_or_else(|| "local".to_string());
    if !STAGES.contains(&stage.as_str()) {
        return Err(ConfError::Stage(stage));
    }
    let mut names = vec!["embedded default.toml".to_string()];
    let mut builder = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    let dir = conf_dir(sources.conf_dir.as_deref());
    if let Some(dir) = &dir {
        for name in ["default.toml".to_string(), format!("{stage}.toml")] {
            let path = dir.join(&name);
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
                names.push(path.display().to_string());
            }
        }
    }
    // The env file's PALISADE__ variables layer below the real environment's.
    let env_file = sources
        .env_file
        .clone()
        .or_else(|| get("PALISADE_ENV_FILE").map(PathBuf::from));
    let mut layered: Vec<(String, String)> = Vec::new();
    if let Some(path) = &env_file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        layered.extend(parse_env_file(path, &text)?);
        names.push(path.display().to_string());
    }
    let from_env: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("PALISADE__"))
        .cloned()
        .collect();
    if !from_env.is_empty() {
        names.push("PALISADE__* environment".to_string());
    }
    layered.extend(from_env);
    let env_map: Map<String, String> = layered
        .into_iter()
        .filter(|(k, _)| k.starts_with("PALISADE__"))
        .collect();
    let mut environment = Environment::with_prefix("PALISADE")
        .separator("__")
        .list_separator(",")
        .try_parsing(true)
        .source(Some(env_map));
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    let config = builder
        .add_source(environment)
        .build()
        .map_err(|e| ConfError::Invalid(e.to_string()))?;

    let known = keys_of(
        &Config::builder()
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .build()
            .map_err(|e| ConfError::Invalid(e.to_string()))?,
    )?;
    if let Some(unknown) = keys_of(&config)?.difference(&known).next() {
        return Err(ConfError::UnknownKey(unknown.clone()));
    }
    let mut settings: Settings = config
        .try_deserialize()
        .map_err(|e| ConfError::Invalid(e.to_string()))?;
    settings
        .validate()
        .map_err(|e| ConfError::Invalid(e.to_string()))?;
    if settings.cluster.secret.is_empty() && !settings.cluster.secret_file.is_empty() {
        settings.cluster.secret = read_secret_file(&settings.cluster.secret_file)?;
    }
    // a key file that is missing or holds no key is refused now, so `palisade validate`
    // says so; the node reads it again when it opens its store
    if settings.store.credentials_key.is_empty() && !settings.store.credentials_key_file.is_empty()
    {
        palisade_actors::crypto::read_key_file(Path::new(&settings.store.credentials_key_file))
            .map_err(|e| {
                ConfError::Invalid(format!("invalid setting `store.credentials_key_file`: {e}"))
            })?;
    }
    Ok(Loaded {
        settings,
        stage,
        sources: names,
    })
}

/// The cluster secret held in `cluster.secret_file`, without surrounding whitespace.
/// Never quotes the file's content in an error.
fn read_secret_file(path: &str) -> Result<String, ConfError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfError::Read {
        path: path.to_string(),
        reason: e.kind().to_string(),
    })?;
    let secret = text.trim().to_string();
    if secret.len() < palisade_actors::settings::MIN_SECRET_BYTES {
        return Err(ConfError::Invalid(format!(
            "invalid setting `cluster.secret_file`: {path} must hold at least {} bytes",
            palisade_actors::settings::MIN_SECRET_BYTES
        )));
    }
    Ok(secret)
}

/// Variables of the env file that are not PALISADE__ settings (proxy, AWS credentials):
/// exported into the process environment unless already set, as systemd's
/// `EnvironmentFile=` would have done. Call before any thread starts.
pub fn apply_env_file(sources: &Sources) -> Result<(), ConfError> {
    let path = match sources
        .env_file
        .clone()
        .or_else(|| std::env::var("PALISADE_ENV_FILE").ok().map(PathBuf::from))
    {
        Some(p) => p,
        None => return Ok(()),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    for (k, v) in parse_env_file(&path, &text)? {
        if !k.starts_with("PALISADE__") && std::env::var_os(&k).is_none() {
            std::env::set_var(k, v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn empty_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn sources(dir: &Path) -> Sources {
        Sources {
            conf_dir: Some(dir.to_path_buf()),
            env_file: None,
        }
    }

    #[test]
    fn cluster_settings_come_from_the_environment_with_the_secret_from_a_file() {
        let dir = empty_dir();
        let key = dir.path().join("cluster.key");
        std::fs::write(&key, "  0123456789abcdef-cluster\n").expect("write key");
        let cluster = [
            ("PALISADE__NODE__ROLES", "worker,interface"),
            ("PALISADE__REDIS__URL", "redis://127.0.0.1:6379"),
            ("PALISADE__STORE__URL", "mysql://root@127.0.0.1:3306/test"),
            (
                "PALISADE__STORE__CREDENTIALS_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ];
        let mut vars = env(&cluster);
        vars.push((
            "PALISADE__CLUSTER__SECRET_FILE".into(),
            key.display().to_string(),
        ));
        let loaded = load(&sources(dir.path()), &vars).expect("loads");
        let s = &loaded.settings;
        assert_eq!(s.node.roles.len(), 2);
        assert!(s.clustered());
        assert_eq!(s.cluster.secret, "0123456789abcdef-cluster");

        // a short key is refused without quoting it
        std::fs::write(&key, "tiny").expect("write key");
        let err = load(&sources(dir.path()), &vars).expect_err("short key");
        assert!(err.to_string().contains("cluster.secret_file"), "{err}");
        assert!(!err.to_string().contains("tiny"), "{err}");
        // a missing one names the file
        std::fs::remove_file(&key).expect("remove key");
        let err = load(&sources(dir.path()), &vars).expect_err("missing key");
        assert!(err.to_string().contains("cluster.key"), "{err}");
        // and no secret at all names the key
        let err = load(&sources(dir.path()), &env(&cluster)).expect_err("no secret");
        assert!(err.to_string().contains("cluster.secret"), "{err}");
    }

    #[test]
    fn the_credentials_key_file_is_checked_at_load_without_quoting_it() {
        let dir = empty_dir();
        let key = dir.path().join("credentials.key");
        std::fs::write(&key, format!("{}\n", "0f".repeat(32))).expect("write key");
        let mysql = ("PALISADE__STORE__URL", "mysql://root@127.0.0.1:3306/test");
        let file = key.display().to_string();
        let vars = env(&[mysql, ("PALISADE__STORE__CREDENTIALS_KEY_FILE", &file)]);
        let loaded = load(&sources(dir.path()), &vars).expect("loads");
        assert_eq!(loaded.settings.store.credentials_key_file, file);

        std::fs::write(&key, "hunter2\n").expect("write key");
        let err = load(&sources(dir.path()), &vars).expect_err("not a key");
        assert!(
            err.to_string().contains("store.credentials_key_file"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
        std::fs::remove_file(&key).expect("remove key");
        let err = load(&sources(dir.path()), &vars).expect_err("missing");
        assert!(err.to_string().contains("credentials.key"), "{err}");
        // a MySQL store without any key is refused by name
        let err = load(&sources(dir.path()), &env(&[mysql])).expect_err("no key");
        assert!(err.to_string().contains("store.credentials_key"), "{err}");
        // and the key itself from the environment is fine
        let hex = "a1".repeat(32);
        let vars = env(&[mysql, ("PALISADE__STORE__CREDENTIALS_KEY", &hex)]);
        load(&sources(dir.path()), &vars).expect("loads");
    }

    #[test]
    fn defaults_alone_load() {
        let dir = empty_dir();
        let loaded = load(&sources(dir.path()), &[]).expect("load");
        assert_eq!(loaded.stage, "local");
        assert_eq!(loaded.settings.http.bind.to_string(), "127.0.0.1:8001");
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = empty_dir();
        std::fs::write(
            dir.path().join("test.toml"),
            "[http]\nbind = \"127.0.0.1:7000\"\n[scheduler]\nworkers = 2\n",
        )
        .expect("write");
        let envfile = dir.path().join("palisade.env");
        std::fs::write(
            &envfile,
            "# comment\nPALISADE__SCHEDULER__WORKERS=3\nexport PALISADE__LOG__FORMAT=\"json\"\n",
        )
        .expect("write");
        let mut s = sources(dir.path());
        s.env_file = Some(envfile);
        let loaded = load(
            &s,
            &env(&[
                ("STAGE", "test"),
                ("PALISADE__HTTP__BIND", "127.0.0.1:9000"),
                ("PALISADE__NODE__ROLES", "worker,interface"),
            ]),
        )
        .expect("load");
        let st = &loaded.settings;
        assert_eq!(
            st.http.bind.to_string(),
            "127.0.0.1:9000",
            "env beats stage file"
        );
        assert_eq!(st.scheduler.workers, 3, "env file beats stage file");
        assert_eq!(st.log.format, palisade_actors::settings::LogFormat::Json);
        assert_eq!(st.node.roles.len(), 2);
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = empty_dir();
        std::fs::write(dir.path().join("local.toml"), "[http]\nbindd = \"x\"\n").expect("write");
        let err = load(&sources(dir.path()), &[]).expect_err("must refuse");
        assert_eq!(err.to_string(), "unknown configuration key `http.bindd`");
        let dir2 = empty_dir();
        let err = load(
            &sources(dir2.path()),
            &env(&[("PALISADE__STORE__NOPE", "1")]),
        )
        .expect_err("must refuse");
        assert!(err.to_string().contains("store.nope"), "{err}");
    }

    #[test]
    fn bad_values_and_stage_are_refused() {
        let dir = empty_dir();
        let err = load(&sources(dir.path()), &env(&[("STAGE", "prod")])).expect_err("stage");
        assert!(err.to_string().contains("prod"));
        let err = load(
            &sources(dir.path()),
            &env(&[("PALISADE__SCHEDULER__WORKERS", "0")]),
        )
        .expect_err("zero workers");
        assert!(err.to_string().contains("scheduler.workers"), "{err}");
        let err = load(
            &sources(dir.path()),
            &env(&[("PALISADE__HTTP__BIND", "nowhere")]),
        )
        .expect_err("bad bind");
        assert!(err.to_string().contains("invalid"), "{err}");
    }

    #[test]
    fn env_file_lines_must_be_assignments() {
        let err = parse_env_file(Path::new("x.env"), "A=1\nnot an assignment\n").expect_err("bad");
        assert!(err.to_string().contains("line 2"));
    }
}
