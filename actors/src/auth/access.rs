//! Who may call which route: one table of (method, route pattern) -> [`Access`].
//!
//! Owns: [`RULES`], the only place a route's required role is written, and [`rule`], the
//! lookup the interface server's guard makes for every request. A route that is not in the
//! table is refused (deny by default); a unit test beside the routes walks every
//! registered route and checks that it has an entry here.
//!
//! Must never: open a route beyond the probes, `/metrics`, the OpenAPI document,
//! `/v2/public/*` and the web GUI's static files (`/`, `/ui`, `/ui/`, `/ui/{file}`:
//! compiled-in assets that hold no data; everything the GUI shows comes through the API
//! under the user's own session).

use super::Role;

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Open,
    /// An authenticated principal with at least this role.
    Role(Role),
}

use Access::{Open, Role as Needs};
use Role::{Admin, Operator, Viewer};

/// Every route of the REST API, by method and route pattern (as registered), and what it
/// needs. Reads need `viewer`; clouds, harvests and jobs `operator`; the cluster, users
/// and the audit log `admin`. Handlers narrow further where a rule depends on the target
/// (another user's API key needs `admin`).
pub const RULES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Open),
    ("GET", "/readyz", Open),
    // Open on purpose: Prometheus scrapers carry no credentials. The counters hold no
    // secret and no inventory; bind the interface to a private address or filter
    // `/metrics` at the reverse proxy where that is still too much.
    ("GET", "/metrics", Open),
    // The API's description: no data, and clients need it before they have a key.
    ("GET", "/v2/openapi.json", Open),
    ("POST", "/v2/public/user/login", Open),
    // The web GUI's files: the same for everyone, with no data in them.
    ("GET", "/", Open),
    ("GET", "/ui", Open),
    ("GET", "/ui/", Open),
    ("GET", "/ui/{file}", Open),
    ("POST", "/v2/user/logout", Needs(Viewer)),
    ("GET", "/v2/user/me", Needs(Viewer)),
    ("GET", "/v2/api-keys", Needs(Viewer)),
    ("POST", "/v2/api-keys", Needs(Viewer)),
    ("DELETE", "/v2/api-keys/{id}", Needs(Viewer)),
    ("GET", "/v2/users", Needs(Admin)),
    ("POST", "/v2/users", Needs(Admin)),
    ("GET", "/v2/audit", Needs(Admin)),
    ("GET", "/v2/clouds", Needs(Viewer)),
    ("POST", "/v2/clouds", Needs(Operator)),
    ("GET", "/v2/clouds/{id}", Needs(Viewer)),
    ("DELETE", "/v2/clouds/{id}", Needs(Operator)),
    ("POST", "/v2/clouds/{id}/harvest", Needs(Operator)),
    ("GET", "/v2/jobs/queues", Needs(Viewer)),
    ("GET", "/v2/jobs/dead", Needs(Viewer)),
    ("GET", "/v2/jobs/{id}", Needs(Viewer)),
    ("POST", "/v2/jobs/{id}/requeue", Needs(Operator)),
    ("POST", "/v2/jobs/{id}/cancel", Needs(Operator)),
    ("GET", "/v2/cluster/nodes", Needs(Viewer)),
    ("POST", "/v2/cluster/nodes/{id}/drain", Needs(Admin)),
    ("POST", "/v2/cluster/reload", Needs(Admin)),
    ("GET", "/v2/resources", Needs(Viewer)),
    ("GET", "/v2/resources/{id}", Needs(Viewer)),
    ("GET", "/v2/resource-counts", Needs(Viewer)),
    ("GET", "/v2/insights", Needs(Viewer)),
    ("GET", "/v2/insights/{id}", Needs(Viewer)),
    ("GET", "/v2/insights/{id}/findings", Needs(Viewer)),
];

/// The access `method` on the route `pattern` needs; none when the table does not name
/// the pair (the guard refuses it).
pub fn rule(method: &str, pattern: &str) -> Option<Access> {
    RULES
        .iter()
        .find(|(m, p, _)| *m == method && *p == pattern)
        .map(|(_, _, a)| *a)
}

/// Whether the table names `pattern` with any method (a method it does not name gets the
/// route's JSON 405 once authenticated).
pub fn knows_pattern(pattern: &str) -> bool {
    RULES.iter().any(|(_, p, _)| *p == pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_probes_metrics_public_routes_and_gui_files_are_open() {
        for (method, pattern, access) in RULES {
            if *access == Open {
                assert!(
                    matches!(
                        *pattern,
                        "/healthz"
                            | "/readyz"
                            | "/metrics"
                            | "/v2/openapi.json"
                            | "/"
                            | "/ui"
                            | "/ui/"
                            | "/ui/{file}"
                    ) || pattern.starts_with("/v2/public/"),
                    "{method} {pattern} must not be open"
                );
                if !pattern.starts_with("/v2/public/") {
                    assert_eq!(*method, "GET", "{pattern}: only reads are open");
                }
            } else {
                assert!(!pattern.starts_with("/v2/public/"), "{pattern}");
            }
        }
    }

    #[test]
    fn every_rule_is_unique_and_mutations_need_more_than_a_read_where_documented() {
        for (i, (m, p, _)) in RULES.iter().enumerate() {
            assert!(
                !RULES[i + 1..].iter().any(|(m2, p2, _)| m == m2 && p == p2),
                "{m} {p} is listed twice"
            );
        }
        assert_eq!(rule("GET", "/v2/clouds"), Some(Needs(Viewer)));
        assert_eq!(rule("POST", "/v2/clouds"), Some(Needs(Operator)));
        assert_eq!(rule("POST", "/v2/jobs/{id}/cancel"), Some(Needs(Operator)));
        assert_eq!(rule("POST", "/v2/cluster/reload"), Some(Needs(Admin)));
        assert_eq!(rule("GET", "/v2/audit"), Some(Needs(Admin)));
        assert_eq!(rule("POST", "/v2/users"), Some(Needs(Admin)));
        assert_eq!(rule("PUT", "/v2/clouds"), None);
        assert_eq!(rule("GET", "/v2/secret-new-route"), None);
        assert!(knows_pattern("/v2/clouds"));
        assert!(!knows_pattern("/v2/secret-new-route"));
    }
}
