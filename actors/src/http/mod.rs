//! The interface server: Palisade's REST API v2, on actix-web.
//!
//! Owns: the routes ([`configure`]), the application with its request middleware
//! ([`app`]), the listening server ([`bind`]), and the translation between HTTP and the
//! store, queue and insight catalog. One file per concept: [`actor`] (the server as the
//! supervisor's child), [`error`] (the one error type), [`guard`] (authentication, roles,
//! CSRF and the audit log, in front of every route), `paging`, `probes` (health, readiness,
//! metrics), `clouds`, `cluster`, `jobs`, `resources`, `insights`, `login` (sessions),
//! `users` (users, API keys, the audit log).
//!
//! Must never: run a job or call a cloud (it enqueues through the scheduler), return a
//! secret, answer an error with anything but a JSON `{"code","message"}` body, panic on
//! any input, or serve a route the access table (`crate::auth::access`) does not name.

pub mod actor;
pub mod error;
pub mod guard;

mod clouds;
mod cluster;
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
use actix_web::{web, App, HttpServer, ResponseError};
use futures::FutureExt;
use tracing::debug;

use crate::bus::SharedBus;
use crate::compliance::Catalog;
use crate::queue::SharedQueue;
use crate::store::SharedStore;

pub use error::{ApiError, BODY_LIMIT};

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
    /// Session lifetime and the failed-login limiter.
    pub login: Arc<crate::auth::LoginPolicy>,
}

/// Bind the interface server on `addr` with one worker and return it without awaiting it:
/// the caller awaits the [`Server`] (it resolves when the server stops) and stops it
/// gracefully through `server.handle().stop(true)`. The server does not listen for
/// signals itself; the supervisor owns SIGTERM/SIGINT.
pub fn bind(addr: std::net::SocketAddr, state: ApiState) -> std::io::Result<Server> {
    let server = HttpServer::new(move || app(state.clone()))
        .workers(1)
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
/// for unknown routes, for `App::configure`. Middleware is not part of it (a
/// `ServiceConfig` cannot carry any): use [`app`] for the full application.
pub fn configure(state: ApiState) -> impl FnOnce(&mut web::ServiceConfig) + Clone {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state))
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
            )
            .service(resource("/healthz", "GET").route(web::get().to(probes::healthz)))
            .service(resource("/readyz", "GET").route(web::get().to(probes::readyz)))
            .service(resource("/metrics", "GET").route(web::get().to(probes::metrics)))
            .service(resource("/v2/public/user/login", "POST").route(web::post().to(login::login)))
            .service(resource("/v2/user/logout", "POST").route(web::post().to(login::logout)))
            .service(resource("/v2/user/me", "GET").route(web::get().to(login::me)))
            .service(
                resource("/v2/users", "GET, POST")
                    .route(web::get().to(users::list_users))
                    .route(web::post().to(users::create_user)),
            )
            .service(
                resource("/v2/api-keys", "GET, POST")
                    .route(web::get().to(users::list_keys))
                    .route(web::post().to(users::create_key)),
            )
            .service(
                resource("/v2/api-keys/{id}", "DELETE").route(web::delete().to(users::revoke_key)),
            )
            .service(resource("/v2/audit", "GET").route(web::get().to(users::audit)))
            .service(
                resource("/v2/clouds", "GET, POST")
                    .route(web::get().to(clouds::list))
                    .route(web::post().to(clouds::create)),
            )
            .service(
                resource("/v2/clouds/{id}", "GET, DELETE")
                    .route(web::get().to(clouds::get))
                    .route(web::delete().to(clouds::delete)),
            )
            .service(
                resource("/v2/clouds/{id}/harvest", "POST").route(web::post().to(clouds::harvest)),
            )
            // before /v2/jobs/{id}, which would otherwise take "queues" for a job id
            .service(resource("/v2/jobs/queues", "GET").route(web::get().to(jobs::queues)))
            .service(resource("/v2/jobs/dead", "GET").route(web::get().to(jobs::dead)))
            .service(resource("/v2/jobs/{id}/requeue", "POST").route(web::post().to(jobs::requeue)))
            .service(resource("/v2/jobs/{id}/cancel", "POST").route(web::post().to(jobs::cancel)))
            .service(
                resource("/v2/cluster/nodes/{id}/drain", "POST")
                    .route(web::post().to(cluster::drain)),
            )
            .service(resource("/v2/cluster/reload", "POST").route(web::post().to(cluster::reload)))
            .service(resource("/v2/jobs/{id}", "GET").route(web::get().to(jobs::get)))
            .service(resource("/v2/cluster/nodes", "GET").route(web::get().to(cluster::nodes)))
            .service(resource("/v2/resources", "GET").route(web::get().to(resources::list)))
            .service(resource("/v2/resources/{id}", "GET").route(web::get().to(resources::get)))
            .service(resource("/v2/insights", "GET").route(web::get().to(insights::list)))
            .service(resource("/v2/insights/{id}", "GET").route(web::get().to(insights::get)))
            .service(
                resource("/v2/insights/{id}/findings", "GET")
                    .route(web::get().to(insights::findings)),
            )
            .default_service(web::to(unknown_route));
    }
}

/// A resource whose unmatched methods get a JSON 405 naming the `allowed` ones. Every
/// route is registered through here (tests record them to check each against the access
/// table).
fn resource(path: &str, allowed: &'static str) -> actix_web::Resource {
    #[cfg(test)]
    tests::REGISTERED.with(|r| r.borrow_mut().push((path.to_string(), allowed)));
    web::resource(path).default_service(web::to(move || async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed { allowed })
    }))
}

async fn unknown_route(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    // The path is the client's own input; cap what is echoed back.
    let path: String = req.path().chars().take(200).collect();
    Err(ApiError::NotFound(format!("route {path}")))
}
