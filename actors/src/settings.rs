//! Palisade's settings: the typed form of the layered configuration.
//!
//! Owns: the shape of every configuration key and its validation. `daemon` layers the
//! sources (defaults, stage file, env file, environment); this module only describes and
//! checks the result.
//!
//! Must never: read files or the environment itself, or default a key in code: every
//! default lives in `conf/default.toml`, which is embedded as [`DEFAULT_TOML`].

use serde::Deserialize;
use std::net::SocketAddr;

/// `conf/default.toml`, embedded so the binary runs with no files at all.
pub const DEFAULT_TOML: &str = include_str!("../../conf/default.toml");

/// Everything Palisade reads from configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Verbose diagnostics; empty means "by stage".
    pub debug: DebugFlag,
    pub node: NodeSettings,
    pub log: LogSettings,
    pub http: HttpSettings,
    pub store: StoreSettings,
    pub redis: RedisSettings,
    pub queue: QueueSettings,
    pub cluster: ClusterSettings,
    pub scheduler: SchedulerSettings,
    pub supervisor: SupervisorSettings,
    pub aws: AwsSettings,
    pub compliance: ComplianceSettings,
    pub auth: AuthSettings,
}

/// `debug`: a boolean, or empty for "true unless the stage is live".
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum DebugFlag {
    Set(bool),
    ByStage(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Scheduler,
    Worker,
    Interface,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// Node id; empty means the host name.
    pub id: String,
    pub roles: Vec<Role>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Default filter directive when `RUST_LOG` is not set.
    pub level: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    /// Prefix of every route when a reverse proxy serves Palisade under a path
    /// (`/palisade`); empty serves at the root.
    pub base_path: String,
    /// Peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<ProxyNet>,
    /// Threads serving requests; 0: one per CPU core.
    pub workers: usize,
}

impl HttpSettings {
    /// The threads to serve requests on: `workers`, or one per core when it is 0.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// A trusted proxy's network: a CIDR (`10.0.0.0/8`, `fd00::/8`) or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyNet(pub ipnet::IpNet);

impl std::str::FromStr for ProxyNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(ProxyNet(net.trunc()));
        }
        s.parse::<std::net::IpAddr>()
            .map(|ip| ProxyNet(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("{s:?} is neither an address nor a CIDR network"))
    }
}

impl<'de> Deserialize<'de> for ProxyNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub url: String,
    pub batch_size: usize,
    /// Listing totals kept per filter for the store's current generation (exact: any
    /// write that could change a total moves the generation); 0 counts every listing.
    pub count_cache_entries: usize,
    /// The key that seals cloud credentials in the store: 32 bytes as base64 or 64 hex
    /// characters; see [`crate::crypto::CredentialsCipher::for_store`]. Never logged.
    pub credentials_key: String,
    /// A file holding that key, read at start when `credentials_key` is empty.
    pub credentials_key_file: String,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &crate::store::mysql::redact_url(&self.url))
            .field("batch_size", &self.batch_size)
            .field("count_cache_entries", &self.count_cache_entries)
            .field(
                "credentials_key",
                &if self.credentials_key.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("credentials_key_file", &self.credentials_key_file)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Empty: in-process queue and bus (a single node).
    pub url: String,
    pub prefix: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub lease_secs: u64,
    pub max_attempts: u32,
    pub retry_backoff_secs: u64,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// The bus's HMAC key; see [`ClusterSettings::secret_file`].
    pub secret: String,
    /// A file holding the key, read by the daemon at start when `secret` is empty.
    pub secret_file: String,
    pub leader_lease_secs: u64,
    pub heartbeat_secs: u64,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("secret_file", &self.secret_file)
            .field("leader_lease_secs", &self.leader_lease_secs)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .finish()
    }
}

/// The shortest cluster secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    pub workers: usize,
    pub harvest_interval_secs: u64,
    pub compliance_interval_secs: u64,
    pub shutdown_grace_secs: u64,
    pub job_history: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSettings {
    pub restart_backoff_initial_ms: u64,
    pub restart_backoff_max_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    pub concurrency: usize,
    pub requests_per_second: f64,
    pub burst: u32,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    pub connect_timeout_secs: u64,
    pub request_timeout_secs: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceSettings {
    pub required_tags: Vec<String>,
    pub page_size: usize,
}

/// The longest `auth.api_key_cache_secs` accepted.
pub const MAX_API_KEY_CACHE_SECS: u64 = 300;

/// `[auth]`: users, API keys and login sessions of the interface server.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// An admin API key ensured at start (user `bootstrap`); empty for none. Never logged.
    pub bootstrap_api_key: String,
    /// Lifetime of a login session, in seconds.
    pub session_ttl_secs: u64,
    /// Failed logins per user name and per client address within `login_window_secs`
    /// before further attempts are refused with 429.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
    /// Where a first run with no users writes the generated password of `admin`.
    pub initial_password_file: String,
    /// How long an interface node remembers a live API key (0: it asks the store on every
    /// request; at most [`MAX_API_KEY_CACHE_SECS`]). A key revoked on another node is
    /// refused here within this many seconds; one revoked here, at once.
    pub api_key_cache_secs: u64,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field(
                "bootstrap_api_key",
                &if self.bootstrap_api_key.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("login_max_failures", &self.login_max_failures)
            .field("login_window_secs", &self.login_window_secs)
            .field("initial_password_file", &self.initial_password_file)
            .field("api_key_cache_secs", &self.api_key_cache_secs)
            .finish()
    }
}

/// The shortest bootstrap API key accepted, in characters.
pub const MIN_BOOTSTRAP_KEY_CHARS: usize = 24;

/// A configuration that parsed but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid setting `{key}`: {reason}")]
pub struct SettingsError {
    pub key: String,
    pub reason: String,
}

fn invalid(key: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl Settings {
    /// The embedded defaults alone (for tests and tools).
    pub fn defaults() -> Result<Settings, config::ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()?
            .try_deserialize()
    }

    /// Checks that go beyond types: ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let DebugFlag::ByStage(s) = &self.debug {
            if !s.is_empty() {
                return Err(invalid("debug", "must be true, false or empty"));
            }
        }
        if self.node.roles.is_empty() {
            return Err(invalid("node.roles", "must name at least one role"));
        }
        if self.scheduler.workers == 0 {
            return Err(invalid("scheduler.workers", "must be at least 1"));
        }
        if self.store.batch_size == 0 {
            return Err(invalid("store.batch_size", "must be at least 1"));
        }
        if self.compliance.page_size == 0 {
            return Err(invalid("compliance.page_size", "must be at least 1"));
        }
        let rate = self.aws.requests_per_second;
        if rate.is_nan() || rate <= 0.0 {
            return Err(invalid("aws.requests_per_second", "must be positive"));
        }
        if self.aws.burst == 0 {
            return Err(invalid("aws.burst", "must be at least 1"));
        }
        if self.aws.max_attempts == 0 {
            return Err(invalid("aws.max_attempts", "must be at least 1"));
        }
        if self.aws.concurrency == 0 {
            return Err(invalid("aws.concurrency", "must be at least 1"));
        }
        if !self.store.url.starts_with("sqlite:") && !self.store.url.starts_with("mysql://") {
            return Err(invalid(
                "store.url",
                "must start with sqlite: (embedded) or mysql:// (a cluster)",
            ));
        }
        self.validate_credentials_key()?;
        let redis = &self.redis.url;
        if !redis.is_empty() && !redis.starts_with("redis://") && !redis.starts_with("rediss://") {
            return Err(invalid("redis.url", "must start with redis:// or be empty"));
        }
        if redis.is_empty() {
            if !self.has_role(Role::Worker) {
                return Err(invalid(
                    "node.roles",
                    "without redis.url the queue is this process's own: a node without the \
                     worker role would never run a job (set redis.url to share a cluster's)",
                ));
            }
        } else {
            if self.store.url.starts_with("sqlite:") && !self.has_all_roles() {
                return Err(invalid(
                    "store.url",
                    "nodes of a cluster share one store: use mysql://",
                ));
            }
            let c = &self.cluster;
            if c.secret.is_empty() && c.secret_file.is_empty() {
                return Err(invalid(
                    "cluster.secret",
                    "a cluster (redis.url is set) needs cluster.secret or cluster.secret_file",
                ));
            }
            if !c.secret.is_empty() && c.secret.trim().len() < MIN_SECRET_BYTES {
                return Err(invalid(
                    "cluster.secret",
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                ));
            }
        }
        let base = &self.http.base_path;
        if !base.is_empty()
            && (!base.starts_with('/')
                || base.ends_with('/')
                || base.contains("//")
                || !base
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b)))
        {
            return Err(invalid(
                "http.base_path",
                "must be empty or a path like /palisade: a leading /, no trailing /, \
                 letters, digits and -._~ only",
            ));
        }
        if self.redis.prefix.is_empty() {
            return Err(invalid("redis.prefix", "must not be empty"));
        }
        if self.queue.lease_secs == 0 {
            return Err(invalid("queue.lease_secs", "must be at least 1"));
        }
        if self.queue.max_attempts == 0 {
            return Err(invalid("queue.max_attempts", "must be at least 1"));
        }
        if self.cluster.leader_lease_secs == 0 {
            return Err(invalid("cluster.leader_lease_secs", "must be at least 1"));
        }
        if self.cluster.heartbeat_secs == 0 {
            return Err(invalid("cluster.heartbeat_secs", "must be at least 1"));
        }
        self.validate_auth()
    }

    fn validate_credentials_key(&self) -> Result<(), SettingsError> {
        let s = &self.store;
        if !s.credentials_key.is_empty() {
            // the error names the key's length or encoding, never the key
            crate::crypto::CredentialsKey::parse(&s.credentials_key)
                .map_err(|e| invalid("store.credentials_key", e.to_string()))?;
        }
        if s.url.starts_with("mysql://")
            && s.credentials_key.is_empty()
            && s.credentials_key_file.is_empty()
        {
            return Err(invalid(
                "store.credentials_key",
                "a mysql:// store is shared by a cluster's nodes: set store.credentials_key \
                 or store.credentials_key_file, the same key on every node",
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), SettingsError> {
        let a = &self.auth;
        let key = a.bootstrap_api_key.trim();
        if !key.is_empty() && key.chars().count() < MIN_BOOTSTRAP_KEY_CHARS {
            // never quote the key
            return Err(invalid(
                "auth.bootstrap_api_key",
                format!("must be at least {MIN_BOOTSTRAP_KEY_CHARS} characters"),
            ));
        }
        if key.len() != a.bootstrap_api_key.len() {
            return Err(invalid(
                "auth.bootstrap_api_key",
                "must not start or end with whitespace",
            ));
        }
        if a.session_ttl_secs == 0 {
            return Err(invalid("auth.session_ttl_secs", "must be at least 1"));
        }
        if a.api_key_cache_secs > MAX_API_KEY_CACHE_SECS {
            // the bound on how long a key revoked on another node still works here
            return Err(invalid(
                "auth.api_key_cache_secs",
                format!("must be at most {MAX_API_KEY_CACHE_SECS}"),
            ));
        }
        if a.login_max_failures == 0 {
            return Err(invalid("auth.login_max_failures", "must be at least 1"));
        }
        if a.login_window_secs == 0 {
            return Err(invalid("auth.login_window_secs", "must be at least 1"));
        }
        if a.initial_password_file.is_empty() {
            return Err(invalid("auth.initial_password_file", "must not be empty"));
        }
        Ok(())
    }

    /// Whether verbose diagnostics are on, given the stage.
    pub fn debug_enabled(&self, stage: &str) -> bool {
        match &self.debug {
            DebugFlag::Set(b) => *b,
            DebugFlag::ByStage(_) => stage != "live",
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.node.roles.contains(&role)
    }

    fn has_all_roles(&self) -> bool {
        [Role::Scheduler, Role::Worker, Role::Interface]
            .iter()
            .all(|r| self.has_role(*r))
    }

    /// Whether this node is part of a cluster (its queue and bus are on Redis).
    pub fn clustered(&self) -> bool {
        !self.redis.url.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse_and_validate() {
        let s = Settings::defaults().expect("defaults parse");
        s.validate().expect("defaults are valid");
        assert_eq!(s.http.bind.port(), 8001);
        assert!(s.debug_enabled("local"));
        assert!(!s.debug_enabled("live"));
        assert_eq!(s.node.roles.len(), 3);
        assert!(!s.clustered());
    }

    #[test]
    fn cluster_rules_name_the_key_at_fault() {
        let base = Settings::defaults().expect("defaults parse");
        let key_of = |s: &Settings| s.validate().err().map(|e| e.key);

        // a node with some roles only needs the shared queue
        let mut s = base.clone();
        s.node.roles = vec![Role::Interface];
        assert_eq!(key_of(&s).as_deref(), Some("node.roles"));
        s.node.roles = vec![Role::Worker, Role::Interface];
        assert_eq!(key_of(&s), None, "a headless single node is fine");
        s.node.roles = vec![Role::Worker];

        // ... and a shared store
        s.redis.url = "redis://127.0.0.1:6379".into();
        s.cluster.secret = "0123456789abcdef".into();
        assert_eq!(key_of(&s).as_deref(), Some("store.url"));
        s.store.url = "mysql://palisade:pw@db:3306/palisade".into();
        // ... whose credentials key every node shares
        assert_eq!(key_of(&s).as_deref(), Some("store.credentials_key"));
        s.store.credentials_key_file = "/etc/palisade/credentials.key".into();
        assert_eq!(key_of(&s), None);

        // ... and a secret of some length
        s.cluster.secret = "short".into();
        assert_eq!(key_of(&s).as_deref(), Some("cluster.secret"));
        s.cluster.secret = String::new();
        assert_eq!(key_of(&s).as_deref(), Some("cluster.secret"));
        s.cluster.secret_file = "/etc/palisade/cluster.key".into();
        assert_eq!(key_of(&s), None);
        assert!(s.clustered());

        s.redis.url = "http://redis".into();
        assert_eq!(key_of(&s).as_deref(), Some("redis.url"));
        s.redis.url = "redis://127.0.0.1:6379".into();
        s.store.url = "postgres://x".into();
        assert_eq!(key_of(&s).as_deref(), Some("store.url"));
    }

    #[test]
    fn short_bootstrap_keys_are_refused_without_quoting_them() {
        let mut s = Settings::defaults().expect("defaults parse");
        s.auth.bootstrap_api_key = "short-key-1234".into();
        let e = s.validate().expect_err("a short key is refused");
        assert_eq!(e.key, "auth.bootstrap_api_key");
        assert!(!e.to_string().contains("short-key-1234"), "{e}");
        s.auth.bootstrap_api_key = "a-bootstrap-key-of-24-chars".into();
        s.validate().expect("24 characters or more are fine");
        s.auth.login_max_failures = 0;
        assert_eq!(
            s.validate().err().map(|e| e.key).as_deref(),
            Some("auth.login_max_failures")
        );
    }

    #[test]
    fn the_bootstrap_key_never_shows_in_debug() {
        let mut s = Settings::defaults().expect("defaults parse");
        s.auth.bootstrap_api_key = "bootstrap-key-that-is-secret".into();
        assert!(!format!("{s:?}").contains("bootstrap-key-that"));
    }

    #[test]
    fn reverse_proxy_settings() {
        let base = Settings::defaults().expect("defaults parse");
        assert_eq!(base.http.base_path, "");
        assert!(base.http.trusted_proxies.is_empty());
        let key_of = |s: &Settings| s.validate().err().map(|e| e.key);
        let mut s = base.clone();
        for ok in ["/palisade", "/a/b-c.d_e~"] {
            s.http.base_path = ok.into();
            assert_eq!(key_of(&s), None, "{ok}");
        }
        for bad in [
            "palisade",
            "/palisade/",
            "/",
            "//x",
            "/a b",
            "/{id}",
            "/a?b",
        ] {
            s.http.base_path = bad.into();
            assert_eq!(key_of(&s).as_deref(), Some("http.base_path"), "{bad}");
        }
        let nets: Vec<ProxyNet> = ["10.0.0.0/8", "192.0.2.7", "fd00::/8", "10.1.2.3/8"]
            .iter()
            .map(|n| n.parse().expect("network"))
            .collect();
        assert_eq!(nets[1].0.to_string(), "192.0.2.7/32");
        assert_eq!(nets[3].0.to_string(), "10.0.0.0/8", "host bits dropped");
        for bad in ["10.0.0.0/33", "proxy.example", ""] {
            assert!(bad.parse::<ProxyNet>().is_err(), "{bad}");
        }
        let parsed: Result<Settings, _> = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .set_override("http.trusted_proxies", vec!["10.0.0.0/8", "nonsense"])
            .and_then(|b| b.build())
            .and_then(|c| c.try_deserialize());
        let e = parsed.expect_err("a bad network is refused");
        assert!(e.to_string().contains("nonsense"), "{e}");
    }

    #[test]
    fn credentials_keys_are_checked_without_quoting_them_and_never_shown() {
        let mut s = Settings::defaults().expect("defaults parse");
        assert_eq!(
            s.store.credentials_key, "",
            "a single node generates its key"
        );
        s.store.credentials_key = "c2VjcmV0LWJ1dC10b28tc2hvcnQ=".into();
        let e = s.validate().expect_err("16 bytes is too short");
        assert_eq!(e.key, "store.credentials_key");
        assert!(e.reason.contains("32 bytes"), "{e}");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        s.store.credentials_key = "ab".repeat(32);
        s.validate().expect("64 hex characters");
        assert!(!format!("{s:?}").contains("abababab"), "{s:?}");
        s.store.credentials_key_file = "/etc/palisade/credentials.key".into();
        s.validate()
            .expect("the key wins over a file of a lower layer");
        s.store.credentials_key = String::new();
        s.validate().expect("a key file alone");
        s.store.url = "mysql://palisade:hunter2@db:3306/palisade".into();
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
    }

    #[test]
    fn the_cluster_secret_never_shows_in_debug() {
        let mut s = Settings::defaults().expect("defaults parse");
        s.cluster.secret = "super-secret-cluster-key".into();
        assert!(!format!("{s:?}").contains("super-secret"));
    }
}
