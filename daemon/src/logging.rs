//! Log set-up: readable text or JSON on stderr, filtered by `RUST_LOG` or `log.level`; the
//! level can be changed while the process runs (a configuration reload).

use palisade_actors::settings::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Changes the log filter of the running process to a `log.level` directive.
pub type SetLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// `RUST_LOG`, when set and not empty: it wins over `log.level`, at start and on reload.
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Install the global subscriber and return how to change its level later. Safe to call
/// once per process.
pub fn init(settings: &LogSettings) -> SetLevel {
    let filter = rust_log()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&settings.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // the reloading layer wraps the formatting one: choose the format first
    match settings.format {
        LogFormat::Json => {
            let builder = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            Box::new(move |level| set(level, |f| handle.reload(f).map_err(|e| e.to_string())))
        }
        LogFormat::Text => {
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            Box::new(move |level| set(level, |f| handle.reload(f).map_err(|e| e.to_string())))
        }
    }
}

fn set(level: &str, reload: impl Fn(EnvFilter) -> Result<(), String>) -> Result<(), String> {
    if rust_log().is_some() {
        return Err("RUST_LOG is set and overrides log.level".into());
    }
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level {level:?}: {e}"))?;
    reload(filter)
}
