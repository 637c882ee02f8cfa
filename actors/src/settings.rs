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
    pub scheduler: SchedulerSettings,
    pub supervisor: SupervisorSettings,
    pub aws: AwsSettings,
    pub compliance: ComplianceSettings,
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
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub url: String,
    pub batch_size: usize,
}

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
        if !self.store.url.starts_with("sqlite:") {
            return Err(invalid(
                "store.url",
                "must start with sqlite: (the only store in this build)",
            ));
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
    }
}
