//! The OpenAPI 3 document of the REST API, generated from the code and served at
//! `GET /v2/openapi.json`.
//!
//! Owns: [`ApiDoc`] (the one list of documented operations: each handler's
//! `#[utoipa::path]`), the schemas of list answers and of the figures whose types live
//! elsewhere, the parameter schemas built from the listing conventions (limits, sort
//! fields), and [`Conventions`], which adds what every operation shares: the security
//! schemes (`Api-Key` header, session cookie), 401/403 on every operation that is not open,
//! 500/503 on every operation that reads a backend, and the error code list.
//!
//! Must never: drift from [`super::ROUTES`]: a test holds the document's paths and methods
//! to the routes registered, and the mirrored schemas to what the handlers serialise.

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, ResponseBuilder, ServerBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use palisade_proto::{
    CloudView, Credentials, Finding, FindingState, JobKind, JobPriority, JobState, Provider,
    Resource, ResourceType, Severity,
};

use super::error::{ErrorBody, ERROR_CODES};
use super::insights::InsightView;
use super::jobs::JobView;
use super::paging::{LIMIT_DEFAULT, LIMIT_MAX};
use super::ApiState;

/// The name of the session cookie in the document's security schemes.
pub const SESSION_COOKIE: &str = "palisade_session";

/// The documented operations: add a handler here when adding a route to
/// [`super::ROUTES`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palisade",
        description = "Palisade's REST API v2.",
    ),
    paths(
        super::probes::healthz,
        super::probes::readyz,
        super::probes::metrics,
        document,
        super::clouds::list,
        super::clouds::create,
        super::clouds::get,
        super::clouds::delete,
        super::clouds::harvest,
        super::jobs::queues,
        super::jobs::dead,
        super::jobs::requeue,
        super::jobs::cancel,
        super::jobs::get,
        super::cluster::drain,
        super::cluster::reload,
        super::cluster::nodes,
        super::resources::list,
        super::resources::get,
        super::counts::by_type,
        super::insights::list,
        super::insights::get,
        super::insights::findings,
        super::login::login,
        super::login::logout,
        super::login::me,
        super::users::list_users,
        super::users::create_user,
        super::users::create_key,
        super::users::list_keys,
        super::users::revoke_key,
        super::users::audit,
    ),
    components(schemas(
        ErrorBody, Provider, ResourceType, Severity, FindingState, JobPriority, JobState,
        Credentials, JobKind, CloudView, Resource, Finding,
    )),
    modifiers(&Conventions),
    tags(
        (name = "probes", description = "Liveness, readiness and metrics"),
        (name = "meta", description = "This document"),
        (name = "clouds", description = "Cloud accounts and their harvests"),
        (name = "resources", description = "Harvested resources"),
        (name = "insights", description = "Insights and their findings"),
        (name = "jobs", description = "Jobs, the queue and its dead letters"),
        (name = "cluster", description = "The nodes of the cluster"),
        (name = "users", description = "Sign in, users, API keys and the audit log"),
    )
)]
pub struct ApiDoc;

/// Operations anyone may call, without credentials.
const OPEN: &[&str] = &["healthz", "readyz", "openapi", "login"];
/// Operations that read no backend: no 500/503.
const NO_BACKEND: &[&str] = &["healthz", "metrics", "openapi"];

/// What every operation shares; see the module documentation.
pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Api-Key",
                "An API key, created through the API (shown once)",
            ))),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The session cookie set by signing in (the web interface)",
            ))),
        );
        doc.security = Some(vec![
            SecurityRequirement::new("api_key", Vec::<String>::new()),
            SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
        doc.info.description = Some(description());

        let error = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "Error",
                            ))))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let id = op.operation_id.clone().unwrap_or_default();
                let responses = &mut op.responses.responses;
                if OPEN.contains(&id.as_str()) {
                    op.security = Some(Vec::new());
                } else {
                    responses.entry("401".into()).or_insert_with(|| {
                        error("No credentials, or not valid ones (`unauthorized`)")
                    });
                    responses.entry("403".into()).or_insert_with(|| {
                        error("The credentials' role may not do this (`forbidden`)")
                    });
                }
                if !NO_BACKEND.contains(&id.as_str()) {
                    responses
                        .entry("500".into())
                        .or_insert_with(|| error("An unexpected failure, logged (`internal`)"));
                    responses.entry("503".into()).or_insert_with(|| {
                        error("A backend (store, queue, bus) is out (`unavailable`)")
                    });
                }
            }
        }
    }
}

/// The document's description: the conventions every endpoint follows.
fn description() -> String {
    let mut codes = String::new();
    for (code, meaning) in ERROR_CODES {
        codes.push_str(&format!("- `{code}`: {meaning}\n"));
    }
    format!(
        "Palisade's REST API v2.\n\n\
         **Lists** answer `{{\"total\", \"items\", \"limit\", \"offset\"}}`: `total` counts every \
         match of the filters. `limit` (1 to {LIMIT_MAX}, default {LIMIT_DEFAULT}) and \
         `offset` (default 0) choose the page; `sort=<field>` or `sort=-<field>` \
         (descending) orders it by one of the fields each list names; anything else is a \
         400 `bad_sort`. Unknown query parameters are refused (400).\n\n\
         **Errors** answer `{{\"code\", \"message\"}}`, `code` being one of:\n\n{codes}\n\
         **Behind a reverse proxy** every path is under `http.base_path` (the `servers` \
         entry of this document)."
    )
}

/// `GET /v2/openapi.json`: this document, with the server's base path as its server.
#[utoipa::path(
    get,
    path = "/v2/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json"))
)]
pub(super) async fn document(state: web::Data<ApiState>) -> HttpResponse {
    static DOC: OnceLock<Document> = OnceLock::new();
    let mut doc = DOC.get_or_init(ApiDoc::openapi).clone();
    let base = &state.proxy.base_path;
    doc.servers = Some(vec![ServerBuilder::new()
        .url(if base.is_empty() { "/" } else { base.as_str() })
        .build()]);
    HttpResponse::Ok().json(doc)
}

/// A documented list answer; the handlers serialise [`super::paging::ListPage`], whose
/// fields a test holds to these.
macro_rules! list_schema {
    ($name:ident, $item:ty, $what:literal) => {
        #[doc = concat!("One page of ", $what, ".")]
        #[derive(ToSchema)]
        #[allow(dead_code)]
        pub(super) struct $name {
            /// Matches of the filters, in all pages.
            total: u64,
            items: Vec<$item>,
            limit: u32,
            offset: u64,
        }
    };
}

list_schema!(CloudList, CloudView, "clouds");
list_schema!(ResourceList, Resource, "resources");
list_schema!(FindingList, Finding, "findings");
list_schema!(InsightList, InsightView<'static>, "insights");
list_schema!(JobList, JobView<'static>, "jobs");
list_schema!(NodeList, NodeInfoDoc, "nodes");
list_schema!(UserList, super::users::UserView<'static>, "users");
list_schema!(ApiKeyList, super::users::KeyView<'static>, "API keys");
list_schema!(
    AuditList,
    super::users::AuditView<'static>,
    "audit log entries"
);

/// One node as the registry reports it ([`crate::cluster::registry::NodeInfo`]).
#[derive(Serialize, ToSchema)]
#[schema(as = Node)]
pub(super) struct NodeInfoDoc {
    node: String,
    roles: Vec<String>,
    /// Jobs it ran at its last heartbeat.
    running_jobs: u32,
    #[schema(value_type = String, format = DateTime)]
    last_seen: String,
    /// Seconds since its last heartbeat.
    age_secs: f64,
    /// `up`, or `stale` after three missed heartbeats.
    state: String,
}

/// One priority's figures ([`crate::queue::PriorityStats`]).
#[derive(Serialize, ToSchema)]
#[schema(as = PriorityStats)]
pub(super) struct PriorityStatsDoc {
    /// Jobs waiting.
    depth: u64,
    oldest_wait_secs: f64,
    mean_wait_secs: f64,
    mean_run_secs: f64,
    running: u64,
    done: u64,
    failed: u64,
}

/// The queue status view ([`crate::queue::QueueStats`]).
#[derive(Serialize, ToSchema)]
#[schema(as = QueueStats)]
pub(super) struct QueueStatsDoc {
    p0: PriorityStatsDoc,
    p1: PriorityStatsDoc,
    p2: PriorityStatsDoc,
    /// Jobs running now, per node.
    in_flight_per_node: std::collections::BTreeMap<String, u64>,
    /// Jobs in the dead-letter list.
    dead_letter: u64,
}

/// Parameter schemas built from the listing conventions, for `#[param(schema_with)]`.
pub(super) mod schema {
    use serde_json::json;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::Object;

    use super::super::paging::{LIMIT_DEFAULT, LIMIT_MAX};
    use super::super::{clouds, cluster, insights, jobs, resources};

    pub fn limit() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(LIMIT_MAX))
            .default(Some(json!(LIMIT_DEFAULT)))
            .description(Some("Items per page"))
            .build()
    }

    pub fn offset() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(0))
            .maximum(Some(i64::MAX))
            .default(Some(json!(0)))
            .description(Some("Items to skip"))
            .build()
    }

    pub fn dead_offset() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(jobs::DEAD_WINDOW - 1))
            .default(Some(json!(0)))
            .description(Some("Items to skip"))
            .build()
    }

    /// `sort`: each field, ascending or (with `-`) descending.
    fn sort<F>(fields: &[(&'static str, F)], natural: &str) -> Object {
        let values: Vec<String> = fields
            .iter()
            .flat_map(|(n, _)| [n.to_string(), format!("-{n}")])
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values))
            .description(Some(format!(
                "Order: a field, or -field for descending; by default {natural}"
            )))
            .build()
    }

    pub fn resource_sort() -> Object {
        sort(resources::SORT_FIELDS, "type (then region, id)")
    }

    pub fn finding_sort() -> Object {
        sort(insights::FINDING_SORT_FIELDS, "resource_uid")
    }

    pub fn insight_sort() -> Object {
        sort(insights::SORT_FIELDS, "the catalog's")
    }

    pub fn cloud_sort() -> Object {
        sort(clouds::SORT_FIELDS, "created_at")
    }

    pub fn node_sort() -> Object {
        sort(cluster::SORT_FIELDS, "node")
    }

    pub fn dead_sort() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["-finished_at"]))
            .description(Some("Dead letters are listed newest first only"))
            .build()
    }

    pub fn finding_state() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["open", "resolved", "all"]))
            .default(Some(json!("open")))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    use super::*;
    use crate::http::ROUTES;

    fn doc() -> Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the document serialises")
    }

    /// Every `$ref` in `v`.
    fn refs(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => {
                            out.insert(r.clone());
                        }
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_and_the_routes_match_exactly() {
        let doc = doc();
        let documented: BTreeMap<String, BTreeSet<String>> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .expect("path item")
                    .keys()
                    .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
                    .map(|k| k.to_uppercase())
                    .collect();
                (path.clone(), methods)
            })
            .collect();
        let routed: BTreeMap<String, BTreeSet<String>> = ROUTES
            .iter()
            .map(|r| {
                (
                    r.path.to_string(),
                    r.methods.iter().map(|(m, _)| m.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(ROUTES.len(), routed.len(), "a path is routed twice");
        assert_eq!(documented, routed, "documented operations == routes");
    }

    #[test]
    fn every_operation_states_its_errors_and_security() {
        let doc = doc();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["in"], "header");
        assert_eq!(schemes["api_key"]["name"], "Api-Key");
        assert_eq!(schemes["session"]["in"], "cookie");
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let id = op["operationId"].as_str().expect("operationId").to_string();
                assert!(ids.insert(id.clone()), "operationId {id} twice");
                let responses = op["responses"].as_object().expect("responses");
                let open = op["security"] == serde_json::json!([{}])
                    || op["security"] == serde_json::json!([]);
                assert_eq!(open, OPEN.contains(&id.as_str()), "{method} {path}");
                if !open {
                    for status in ["401", "403"] {
                        assert!(responses.contains_key(status), "{method} {path}: {status}");
                    }
                }
                if !NO_BACKEND.contains(&id.as_str()) {
                    for status in ["500", "503"] {
                        assert!(responses.contains_key(status), "{method} {path}: {status}");
                    }
                }
                for (status, r) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert_eq!(
                            r["content"]["application/json"]["schema"]["$ref"],
                            "#/components/schemas/Error",
                            "{method} {path} {status}"
                        );
                    }
                }
                if path.contains('{') {
                    let params = op["parameters"].as_array().expect("parameters");
                    assert!(
                        params
                            .iter()
                            .any(|p| p["in"] == "path" && p["name"] == "id"),
                        "{method} {path} documents its path parameter"
                    );
                }
            }
        }
        let description = doc["info"]["description"].as_str().expect("description");
        for (code, _) in ERROR_CODES {
            assert!(description.contains(code), "{code}");
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = doc();
        let mut all = BTreeSet::new();
        refs(&doc, &mut all);
        assert!(all.len() > 5, "{all:?}");
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected ref {r}"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} is not in components"
            );
        }
    }

    /// The property names of component `name`, through `allOf`.
    fn properties(doc: &Value, name: &str) -> BTreeSet<String> {
        let schema = &doc["components"]["schemas"][name];
        let mut out: BTreeSet<String> = schema["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for part in schema["allOf"].as_array().into_iter().flatten() {
            if let Some(m) = part["properties"].as_object() {
                out.extend(m.keys().cloned());
            }
        }
        out
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().expect("an object").keys().cloned().collect()
    }

    /// The `enum` of component `name`.
    fn enum_of(doc: &Value, name: &str) -> Vec<Value> {
        doc["components"]["schemas"][name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has an enum"))
            .clone()
    }

    fn serialised<T: Serialize>(values: impl IntoIterator<Item = T>) -> Vec<Value> {
        values
            .into_iter()
            .map(|v| serde_json::to_value(v).expect("serialises"))
            .collect()
    }

    #[test]
    fn enums_list_what_serde_writes() {
        use palisade_proto::{FindingState, JobPriority, JobState};
        let doc = doc();
        assert_eq!(
            enum_of(&doc, "ResourceType"),
            serialised(ResourceType::ALL.iter().copied())
        );
        assert_eq!(
            enum_of(&doc, "Provider"),
            serialised([
                Provider::Aws,
                Provider::Azure,
                Provider::Gcp,
                Provider::Alibaba
            ])
        );
        assert_eq!(
            enum_of(&doc, "Severity"),
            serialised([
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical
            ])
        );
        assert_eq!(
            enum_of(&doc, "FindingState"),
            serialised([FindingState::Open, FindingState::Resolved])
        );
        assert_eq!(enum_of(&doc, "JobPriority"), serialised(JobPriority::ALL));
        assert_eq!(
            enum_of(&doc, "JobState"),
            serialised([
                JobState::Queued,
                JobState::Running,
                JobState::Done,
                JobState::Failed
            ])
        );
    }

    #[test]
    fn mirrored_schemas_match_what_handlers_serialise() {
        let doc = doc();
        let stats = serde_json::to_value(crate::queue::QueueStats::default()).expect("stats");
        assert_eq!(properties(&doc, "QueueStats"), keys(&stats));
        assert_eq!(properties(&doc, "PriorityStats"), keys(&stats["p0"]));
        let registry =
            crate::cluster::registry::NodeRegistry::new(std::time::Duration::from_secs(5));
        let now = chrono::Utc::now();
        registry.record("n1", vec!["worker".into()], 2, now);
        let node = serde_json::to_value(&registry.nodes(now)[0]).expect("node");
        assert_eq!(properties(&doc, "Node"), keys(&node));
        let page = serde_json::to_value(super::super::paging::ListPage::new(
            0,
            Vec::<u8>::new(),
            super::super::paging::Paging {
                limit: 1,
                offset: 0,
            },
        ))
        .expect("page");
        for list in [
            "CloudList",
            "ResourceList",
            "FindingList",
            "InsightList",
            "JobList",
        ] {
            assert_eq!(properties(&doc, list), keys(&page), "{list}");
        }
    }
}
