//! The interface server: Palisade's REST API v2, on actix-web.
//!
//! Owns: the routes ([`ROUTES`], registered by [`configure`] under `http.base_path`), the
//! application with its request middleware ([`app`]), the listening server ([`bind`]), and
//! the translation between HTTP and the store, queue and insight catalog. One file per
//! concept: [`actor`] (the server as the supervisor's child), [`error`] (the one error
//! type), [`forwarded`] (base path, trusted proxies, the client's address), [`openapi`]
//! (the OpenAPI document of [`ROUTES`]), `paging` (the listing conventions), `probes`
//! (health, readiness, metrics), [`guard`] (authentication, roles, CSRF and the audit log,
//! in front of every route), `clouds`, `cluster`, `jobs`, `resources`, `insights`, `login`
//! (sessions), `users` (users, API keys, the audit log), `counts` (resources per type), `gui`
//! (the web GUI's embedded files under `/ui/`, [`GUI_ROUTES`]).
//!
//! Must never: run a job or call a cloud (it enqueues through the scheduler), return a
//! secret, answer an error with anything but a JSON `{"code","message"}` body, panic on
//! any input, or serve a route the access table (`crate::auth::access`) does not name.

pub mod actor;
pub mod error;
pub mod forwarded;
pub mod guard;
pub mod openapi;

mod clouds;
mod cluster;
mod counts;
mod gui;
mod insights;
mod jobs;
mod login;
mod paging;
mod probes;
mod resources;
mod users;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::{web, App, HttpServer, ResponseError};
use futures::FutureExt;
use tracing::debug;

use crate::bus::SharedBus;
use crate::compliance::Catalog;
use crate::queue::SharedQueue;
use crate::store::SharedStore;

pub use error::{ApiError, BODY_LIMIT};
pub use forwarded::{client_addr, is_https, ReverseProxy};

/// What every handler reads: the ports and the insight catalog.
#[derive(Clone)]
pub struct ApiState {
    pub store: SharedStore,
    pub queue: SharedQueue,
    pub bus: SharedBus,
    pub catalog: Arc<Catalog>,
    /// The cluster's nodes as heard on the bus.
    pub registry: Arc<crate::cluster::registry::NodeRegistry>,
    /// This node's id, reported by `/healthz`.
    pub node_id: String,
    /// The base path and the trusted proxies (`http.base_path`, `http.trusted_proxies`).
    pub proxy: ReverseProxy,
    /// Session lifetime and the failed-login limiter.
    pub login: Arc<crate::auth::LoginPolicy>,
}

/// Bind the interface server on `addr` with `workers` threads (at least one; each runs the
/// whole application on [`ApiState`], with the thread's own handle on the store, see
/// [`crate::store::for_worker`]) and return it without awaiting it:
/// the caller awaits the [`Server`] (it resolves when the server stops) and stops it
/// gracefully through `server.handle().stop(true)`. The server does not listen for
/// signals itself; the supervisor owns SIGTERM/SIGINT.
pub fn bind(
    addr: std::net::SocketAddr,
    workers: usize,
    state: ApiState,
) -> std::io::Result<Server> {
    let workers = workers.max(1);
    // the factory runs on each worker thread: each gets its own handle on the store
    let server = HttpServer::new(move || {
        app(ApiState {
            store: crate::store::for_worker(&state.store, workers),
            ..state.clone()
        })
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(addr)?
    .run();
    Ok(server)
}

/// The whole application: [`configure`]'s routes behind [`guard::guard`] (authentication,
/// roles, CSRF, audit) and the request middleware, which counts
/// `palisade_http_requests_total{status}`, logs each request at debug, and turns any error
/// answer that some other layer produced into the JSON error body. Tests and
/// [`bind`] both use this, so tests see exactly what clients see.
pub fn app(
    state: ApiState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        // inner: runs after the request middleware below has started its clock
        .wrap(actix_web::middleware::from_fn(guard::guard))
        .wrap_fn(|req, srv| {
            let started = Instant::now();
            let method = req.method().clone();
            let path = req.path().to_string();
            actix_web::dev::Service::call(srv, req).map(move |res| {
                let res = res.map(normalize_error);
                let status = match &res {
                    Ok(r) => r.status(),
                    Err(e) => e.as_response_error().status_code(),
                };
                crate::metrics::inc(
                    "palisade_http_requests_total",
                    &[("status", status.as_str())],
                );
                debug!(
                    %method,
                    path,
                    status = status.as_u16(),
                    micros = started.elapsed().as_micros() as u64,
                    "http request"
                );
                res
            })
        })
        .configure(configure(state))
}

/// Replace an error answer that did not come from [`ApiError`] (an actix extractor without
/// an error handler, a router default) with the JSON error body for its status.
fn normalize_error<B: MessageBody + 'static>(res: ServiceResponse<B>) -> ServiceResponse<BoxBody> {
    let foreign = match res.response().error() {
        Some(e) => e.as_error::<ApiError>().is_none(),
        None => false,
    };
    if !foreign {
        return res.map_into_boxed_body();
    }
    let replacement = ApiError::from_status(res.status()).error_response();
    res.into_response(replacement)
}

/// The routes with their shared state, body/query/path error handlers and the JSON 404
/// for unknown routes, for `App::configure`; every route under `http.base_path`.
/// Middleware is not part of it (a `ServiceConfig` cannot carry any): use [`app`] for the
/// full application.
pub fn configure(state: ApiState) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        let base = state.proxy.base_path.clone();
        cfg.app_data(web::Data::new(state.proxy.trusted.clone()))
            .app_data(web::Data::new(state))
            .app_data(
                web::JsonConfig::default()
                    .limit(BODY_LIMIT)
                    .error_handler(|e, _req| ApiError::from_json(e).into()),
            )
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .app_data(
                web::QueryConfig::default().error_handler(|e, _req| ApiError::from_query(e).into()),
            )
            .app_data(
                web::PathConfig::default().error_handler(|e, _req| ApiError::from_path(e).into()),
            );
        if base.is_empty() {
            register_routes(cfg);
        } else {
            cfg.service(
                web::scope(&base)
                    .configure(register_routes)
                    .default_service(web::to(unknown_route)),
            );
        }
        cfg.default_service(web::to(unknown_route));
    }
}

/// Binds a handler to a method-bound route: `|r| r.to(clouds::list)`.
pub type RouteTarget = fn(actix_web::Route) -> actix_web::Route;

/// One route: its path (actix's pattern, `{id}` for a segment) and its handler per method.
pub struct RouteSpec {
    pub path: &'static str,
    pub methods: &'static [(Method, RouteTarget)],
}

/// Every route the interface server answers, in matching order: the one table that
/// [`configure`] registers and that the OpenAPI document ([`openapi::ApiDoc`]) must match
/// exactly (a test compares them). A new endpoint is a line here and one in `ApiDoc`.
pub static ROUTES: &[RouteSpec] = &[
    RouteSpec {
        path: "/healthz",
        methods: &[(Method::GET, |r| r.to(probes::healthz))],
    },
    RouteSpec {
        path: "/readyz",
        methods: &[(Method::GET, |r| r.to(probes::readyz))],
    },
    RouteSpec {
        path: "/metrics",
        methods: &[(Method::GET, |r| r.to(probes::metrics))],
    },
    RouteSpec {
        path: "/v2/openapi.json",
        methods: &[(Method::GET, |r| r.to(openapi::document))],
    },
    RouteSpec {
        path: "/v2/public/user/login",
        methods: &[(Method::POST, |r| r.to(login::login))],
    },
    RouteSpec {
        path: "/v2/user/logout",
        methods: &[(Method::POST, |r| r.to(login::logout))],
    },
    RouteSpec {
        path: "/v2/user/me",
        methods: &[(Method::GET, |r| r.to(login::me))],
    },
    RouteSpec {
        path: "/v2/users",
        methods: &[
            (Method::GET, |r| r.to(users::list_users)),
            (Method::POST, |r| r.to(users::create_user)),
        ],
    },
    RouteSpec {
        path: "/v2/api-keys",
        methods: &[
            (Method::GET, |r| r.to(users::list_keys)),
            (Method::POST, |r| r.to(users::create_key)),
        ],
    },
    RouteSpec {
        path: "/v2/api-keys/{id}",
        methods: &[(Method::DELETE, |r| r.to(users::revoke_key))],
    },
    RouteSpec {
        path: "/v2/audit",
        methods: &[(Method::GET, |r| r.to(users::audit))],
    },
    RouteSpec {
        path: "/v2/clouds",
        methods: &[
            (Method::GET, |r| r.to(clouds::list)),
            (Method::POST, |r| r.to(clouds::create)),
        ],
    },
    RouteSpec {
        path: "/v2/clouds/{id}",
        methods: &[
            (Method::GET, |r| r.to(clouds::get)),
            (Method::DELETE, |r| r.to(clouds::delete)),
        ],
    },
    RouteSpec {
        path: "/v2/clouds/{id}/harvest",
        methods: &[(Method::POST, |r| r.to(clouds::harvest))],
    },
    // before /v2/jobs/{id}, which would otherwise take "queues" for a job id
    RouteSpec {
        path: "/v2/jobs/queues",
        methods: &[(Method::GET, |r| r.to(jobs::queues))],
    },
    RouteSpec {
        path: "/v2/jobs/dead",
        methods: &[(Method::GET, |r| r.to(jobs::dead))],
    },
    RouteSpec {
        path: "/v2/jobs/{id}/requeue",
        methods: &[(Method::POST, |r| r.to(jobs::requeue))],
    },
    RouteSpec {
        path: "/v2/jobs/{id}/cancel",
        methods: &[(Method::POST, |r| r.to(jobs::cancel))],
    },
    RouteSpec {
        path: "/v2/jobs/{id}",
        methods: &[(Method::GET, |r| r.to(jobs::get))],
    },
    RouteSpec {
        path: "/v2/cluster/nodes/{id}/drain",
        methods: &[(Method::POST, |r| r.to(cluster::drain))],
    },
    RouteSpec {
        path: "/v2/cluster/reload",
        methods: &[(Method::POST, |r| r.to(cluster::reload))],
    },
    RouteSpec {
        path: "/v2/cluster/nodes",
        methods: &[(Method::GET, |r| r.to(cluster::nodes))],
    },
    RouteSpec {
        path: "/v2/resources",
        methods: &[(Method::GET, |r| r.to(resources::list))],
    },
    RouteSpec {
        path: "/v2/resources/{id}",
        methods: &[(Method::GET, |r| r.to(resources::get))],
    },
    RouteSpec {
        path: "/v2/resource-counts",
        methods: &[(Method::GET, |r| r.to(counts::by_type))],
    },
    RouteSpec {
        path: "/v2/insights",
        methods: &[(Method::GET, |r| r.to(insights::list))],
    },
    RouteSpec {
        path: "/v2/insights/{id}",
        methods: &[(Method::GET, |r| r.to(insights::get))],
    },
    RouteSpec {
        path: "/v2/insights/{id}/findings",
        methods: &[(Method::GET, |r| r.to(insights::findings))],
    },
];

/// The web GUI's routes: its embedded files, open to anyone (they hold no data; see
/// `gui.rs`), and not part of the REST API or its OpenAPI document.
pub static GUI_ROUTES: &[RouteSpec] = &[
    RouteSpec {
        path: "/",
        methods: &[(Method::GET, |r| r.to(gui::to_ui))],
    },
    RouteSpec {
        path: "/ui",
        methods: &[(Method::GET, |r| r.to(gui::to_ui))],
    },
    RouteSpec {
        path: "/ui/",
        methods: &[(Method::GET, |r| r.to(gui::index))],
    },
    RouteSpec {
        path: "/ui/{file}",
        methods: &[(Method::GET, |r| r.to(gui::file))],
    },
];

/// Register [`ROUTES`] and [`GUI_ROUTES`]: each path a resource whose other methods get a
/// JSON 405.
fn register_routes(cfg: &mut web::ServiceConfig) {
    for spec in ROUTES.iter().chain(GUI_ROUTES) {
        let allowed: Vec<&str> = spec.methods.iter().map(|(m, _)| m.as_str()).collect();
        let mut resource = resource(spec.path, allowed.join(", "));
        for (method, handler) in spec.methods {
            resource = resource.route(handler(web::route().method(method.clone())));
        }
        cfg.service(resource);
    }
}

/// A resource whose unmatched methods get a JSON 405 naming the `allowed` ones.
fn resource(path: &str, allowed: String) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || {
        let allowed = allowed.clone();
        async move { Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed { allowed }) }
    }))
}

async fn unknown_route(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    // The path is the client's own input; cap what is echoed back.
    let path: String = req.path().chars().take(200).collect();
    Err(ApiError::NotFound(format!("route {path}")))
}
