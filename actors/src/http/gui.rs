//! The web GUI: a single-page app of static files compiled into the binary, served under
//! `/ui/`. The files live beside this one in `gui/` (HTML, one stylesheet, plain
//! JavaScript ES modules: no build step, nothing fetched from elsewhere); the app reads
//! and writes through the same REST API as every other client, with the session cookie
//! and the CSRF token of a login.
//!
//! Owns: the asset table ([`ASSETS`]), `GET /` and `GET /ui` (redirects to `ui/`), and
//! `GET /ui/` and `GET /ui/{file}` with their content type, `ETag`/`If-None-Match`,
//! `Cache-Control: no-cache` and the security headers ([`CSP`], `nosniff`, `DENY`).
//!
//! Must never: serve anything but the embedded files (no file system access, so no path
//! traversal), put data in an asset (they are open to anyone: the access table lists
//! these routes as open), or let the page run inline script (the CSP forbids it).

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::ApiError;

/// The Content-Security-Policy of every asset: scripts, styles and API calls from this
/// origin only, no inline script or style, no framing, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'self'; \
     frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file the GUI is made of; `index.html` is also `/ui/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: HTML,
        body: include_bytes!("gui/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: CSS,
        body: include_bytes!("gui/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("gui/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_bytes!("gui/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JS,
        body: include_bytes!("gui/dom.js"),
    },
    Asset {
        name: "pages.js",
        content_type: JS,
        body: include_bytes!("gui/pages.js"),
    },
];

/// The entity tag of each asset, by position in [`ASSETS`]: a hash of its bytes, so a new
/// build's changed file is fetched again and an unchanged one answers 304.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                a.body.hash(&mut h);
                format!("\"{:016x}\"", h.finish())
            })
            .collect()
    })
}

/// `GET /` and `GET /ui`: 308 to `ui/`. Relative (from `/` and from `/ui` alike it names
/// `/ui/`), so that a base path in front of the server is kept.
pub(super) async fn to_ui() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "ui/"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .finish()
}

/// `GET /ui/`: the app's page.
pub(super) async fn index(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, "index.html")
}

/// `GET /ui/{file}`: one asset; 404 (JSON) for a name that is not one.
pub(super) async fn file(
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    serve(&req, &name)
}

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        crate::metrics::inc("palisade_gui_unknown_assets_total", &[]);
        tracing::debug!(file = %name.chars().take(64).collect::<String>(), "unknown ui file");
        let shown: String = name.chars().take(64).collect();
        return Err(ApiError::NotFound(format!("ui file {shown}")));
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return Ok(res.finish());
    }
    Ok(res.content_type(asset.content_type).body(asset.body))
}
