//! `palisade run`: start the node's roles and serve until SIGTERM or SIGINT; and
//! `palisade migrate`.

use actix::Actor;
use std::process::ExitCode;
use std::time::Duration;

use palisade_actors::http::{self, ApiState};
use palisade_actors::settings::Role;
use palisade_actors::supervisor::{NodeDeps, NodeError, Shutdown, Supervisor};

use std::sync::Arc;

use palisade_actors::settings::Settings;
use palisade_actors::supervisor::Reload;

use palisade_actors::auth::{bootstrap, LoginPolicy};
use palisade_actors::store::SharedStore;

use crate::conf::{Loaded, Sources};
use crate::logging::SetLevel;

/// The node id: configured, else the host name.
pub fn node_id(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "palisade".to_string())
}

/// The next SIGHUP (never, when it cannot be listened for).
async fn hangup() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            hup.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; use SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}

/// The runtime of a one-shot command (`migrate`, `user`): one thread; a failure to start
/// it is said on stderr and becomes the exit code.
pub fn one_shot_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// `palisade migrate`: bring the store's schema up to this build's.
pub fn migrate(loaded: &Loaded) -> ExitCode {
    let url = loaded.settings.store.url.clone();
    let runtime = match one_shot_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(palisade_actors::store::migrate(&url)) {
        Ok(version) => {
            tracing::info!(version, "store schema migrated");
            eprintln!("store schema is at version {version}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "migration failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Re-read the configuration from the sources the node started with: apply what can change
/// while running (`log.level`) and name the sections that changed but need a restart. A
/// configuration that does not load or validate changes nothing.
fn reloader(sources: Sources, running: Settings, set_level: SetLevel) -> Reload {
    Arc::new(move || {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let fresh = crate::conf::load(&sources, &env)
            .map_err(|e| e.to_string())?
            .settings;
        let mut said = Vec::new();
        match set_level(&fresh.log.level) {
            Ok(()) => said.push(format!("log.level is now {:?}", fresh.log.level)),
            Err(e) => said.push(format!("log.level not applied: {e}")),
        }
        let (a, b) = (&running, &fresh);
        let sections: [(&str, &dyn std::fmt::Debug, &dyn std::fmt::Debug); 13] = [
            ("debug", &a.debug, &b.debug),
            ("node", &a.node, &b.node),
            ("log.format", &a.log.format, &b.log.format),
            ("http", &a.http, &b.http),
            ("store", &a.store, &b.store),
            ("redis", &a.redis, &b.redis),
            ("queue", &a.queue, &b.queue),
            ("cluster", &a.cluster, &b.cluster),
            ("scheduler", &a.scheduler, &b.scheduler),
            ("supervisor", &a.supervisor, &b.supervisor),
            ("aws", &a.aws, &b.aws),
            ("compliance", &a.compliance, &b.compliance),
            ("auth", &a.auth, &b.auth),
        ];
        let changed: Vec<&str> = sections
            .iter()
            .filter(|(_, a, b)| format!("{a:?}") != format!("{b:?}"))
            .map(|(name, _, _)| *name)
            .collect();
        if !changed.is_empty() {
            said.push(format!(
                "changed, applied at the next restart: {}",
                changed.join(", ")
            ));
        }
        Ok(said.join("; "))
    })
}

/// Before the interface serves: ensure the bootstrap API key, or on a first run without
/// users and without one, create `admin` with a password in `auth.initial_password_file`.
async fn prepare_auth(settings: &Settings, store: &SharedStore) -> anyhow::Result<()> {
    let auth = &settings.auth;
    if !auth.bootstrap_api_key.is_empty() {
        bootstrap::ensure_bootstrap_key(store, &auth.bootstrap_api_key)
            .await
            .map_err(|e| anyhow::anyhow!("bootstrap api key: {e}"))?;
    } else {
        bootstrap::ensure_first_admin(store, std::path::Path::new(&auth.initial_password_file))
            .await
            .map_err(|e| anyhow::anyhow!("first admin user: {e}"))?;
    }
    Ok(())
}

/// Run the daemon; returns the process exit code.
pub fn run(loaded: Loaded, sources: Sources, set_level: SetLevel) -> ExitCode {
    let settings = loaded.settings;
    let reload = reloader(sources, settings.clone(), set_level);
    let node = node_id(&settings.node.id);
    tracing::info!(
        stage = %loaded.stage,
        node = %node,
        debug = settings.debug_enabled(&loaded.stage),
        sources = %loaded.sources.join(", "),
        version = env!("CARGO_PKG_VERSION"),
        "palisade starting"
    );
    let system = actix_rt::System::new();
    let result: anyhow::Result<()> = system.block_on(async move {
        // a store or Redis that is down is retried until it answers, or until we are told
        // to stop
        let deps = tokio::select! {
            deps = NodeDeps::connect(&settings, node.clone()) => NodeDeps {
                reload: Some(reload.clone()),
                ..deps?
            },
            signal = wait_for_signal() => {
                tracing::info!(signal, "shutdown requested before the node started");
                return Ok(());
            }
        };
        let server = if settings.has_role(Role::Interface) {
            prepare_auth(&settings, &deps.store).await?;
            let state = ApiState {
                store: deps.store.clone(),
                queue: deps.queue.clone(),
                bus: deps.bus.clone(),
                catalog: deps.catalog.clone(),
                registry: deps.registry.clone(),
                node_id: node.clone(),
                login: Arc::new(LoginPolicy::new(&settings.auth)),
                proxy: http::ReverseProxy::from_settings(&settings.http),
            };
            let server = http::bind(settings.http.bind, settings.http.worker_threads(), state)
                .map_err(|e| NodeError::Bind {
                    addr: settings.http.bind.to_string(),
                    reason: e.to_string(),
                })?;
            tracing::info!(bind = %settings.http.bind, "interface server listening");
            Some(server)
        } else {
            None
        };
        let supervisor = Supervisor::new(deps, server).start();
        // systemd (Type=notify): ready now; watchdog pings while the supervisor lives
        crate::notify::ready();
        if let Some(every) = crate::notify::watchdog_interval() {
            let alive = supervisor.clone();
            actix_rt::spawn(crate::notify::watchdog_loop(every, move || {
                alive.connected()
            }));
        }
        let signal = loop {
            tokio::select! {
                signal = wait_for_signal() => break signal,
                () = hangup() => match reload() {
                    Ok(summary) => tracing::info!(summary, "configuration reloaded (SIGHUP)"),
                    Err(error) => tracing::warn!(
                        error,
                        "configuration reload refused; the running configuration stays"
                    ),
                },
            }
        };
        tracing::info!(signal, "shutdown requested");
        crate::notify::stopping();
        let grace = Duration::from_secs(settings.scheduler.shutdown_grace_secs);
        if let Err(e) = supervisor.send(Shutdown { grace }).await {
            tracing::warn!(error = %e, "supervisor gone before shutdown");
        }
        tracing::info!("palisade stopped");
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "palisade cannot start");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
