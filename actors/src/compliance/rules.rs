//! The insight rule language: how an insight is written (JSON or TOML), compiled and
//! evaluated against one resource.
//!
//! Owns: [`InsightSpec`] (the written form), its compilation into a private condition tree
//! (paths split, literals pre-parsed, regexes and CIDRs compiled once) and
//! [`Insight::matches`].
//!
//! Must never: do I/O, consult the clock (`now` is an input), or allocate per resource on
//! the evaluation path (the one exception: a regex tested against a JSON number formats it).
//!
//! # The language
//!
//! An insight is `{"id", "name", "description", "severity", "resource_types": [..],
//! "rule": <condition>}`; a finding is raised when the condition holds for a resource of
//! one of the named types. A condition is a JSON object, one of:
//!
//! - `{"and": [c, ..]}`, `{"or": [c, ..]}`, `{"not": c}`
//! - `{"path": P, OP: ARG}`: exactly one operator applied to the value at `P` (`path`
//!   defaults to `@`, the current value).
//!
//! Paths are dot-separated keys (a numeric segment also indexes an array), or a JSON list
//! of segments when a key holds a dot (`["$", "tags", "a.b"]`):
//! - relative (`ipPermissions.fromPort`, or `@.x`) starts at the current value: the
//!   resource's `properties` at the top, the list element inside `any` / `all`;
//! - `$`-rooted starts at the resource: `$.id`, `$.name`, `$.region`, `$.account`,
//!   `$.type`, `$.cloud`, `$.provider`, `$.uid`, `$.tags` (a map), `$.tags.<key>`,
//!   `$.properties.<...>`.
//!
//! Operators (values compare loosely: `"22"` equals `22`, `"true"` equals `true`):
//! - `eq`, `ne` (a scalar; `ne` is exactly `not eq`, so it holds for a missing value),
//!   `lt`, `le`, `gt`, `ge` (a number; a numeric string counts, anything else is false)
//! - `in` (a list of scalars), `contains` (a scalar: an element of a list, a substring of a
//!   string, a key of a map)
//! - `exists` / `absent` (`true` or `false`; null counts as absent), `empty` (`true` or
//!   `false`; missing, null, `""`, `[]` and `{}` are empty), `has_keys` (a list of keys the
//!   map or object must all have)
//! - `regex` (a pattern, unanchored unless it says `^`/`$`)
//! - `older_than_days`, `newer_than_days` (a number of days; the value is an RFC 3339
//!   timestamp, a naive `YYYY-MM-DDTHH:MM:SS` taken as UTC, or epoch seconds; compared with
//!   the `now` given to [`Insight::matches`]; an unparseable value is false)
//! - `cidr_contains` (a CIDR: the value, an address or a network, lies inside it),
//!   `cidr_is_world` (`true`: the value is a /0 network such as `0.0.0.0/0` or `::/0`;
//!   `false`: a network narrower than that; an unparseable value is false either way)
//! - `any`, `all` (a condition evaluated against each element of the list at the path, with
//!   relative paths rooted at the element; a missing list is empty: `any` false, `all` true)
//!
//! A port range covering 22 is written with these: `{"or": [{"path": "ipProtocol", "eq":
//! "-1"}, {"and": [{"path": "fromPort", "le": 22}, {"path": "toPort", "ge": 22}]}]}`.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use ipnet::IpNet;
use palisade_proto::{InsightId, Resource, ResourceType, Severity, Timestamp};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Why an insight did not compile. Every variant names the insight, and where it can, the
/// place in the rule (`rule.and[1].any`).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    #[error("insight {insight:?}: cannot parse: {reason}")]
    Parse { insight: String, reason: String },
    #[error("insight {insight:?}: unknown resource type {rtype:?}")]
    UnknownResourceType { insight: String, rtype: String },
    #[error("insight {insight:?}: {at}: unknown operator {op:?}")]
    UnknownOperator {
        insight: String,
        at: String,
        op: String,
    },
    #[error("insight {insight:?}: {at}: bad regex: {reason}")]
    BadRegex {
        insight: String,
        at: String,
        reason: String,
    },
    #[error("insight {insight:?}: {at}: bad cidr {value:?}: {reason}")]
    BadCidr {
        insight: String,
        at: String,
        value: String,
        reason: String,
    },
    #[error("insight {insight:?}: {at}: {reason}")]
    Invalid {
        insight: String,
        at: String,
        reason: String,
    },
    #[error("insight id {0:?} is defined twice")]
    Duplicate(String),
}

/// An insight as written by a person: JSON, or TOML handed over as serde values.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InsightSpec {
    pub id: String,
    pub name: String,
    pub description: String,
    pub severity: Severity,
    pub resource_types: Vec<String>,
    pub rule: Value,
}

impl InsightSpec {
    /// Parse one insight from JSON text; `origin` names it in errors (a file name).
    pub fn from_json(origin: &str, text: &str) -> Result<InsightSpec, RuleError> {
        serde_json::from_str(text).map_err(|e| RuleError::Parse {
            insight: origin.to_string(),
            reason: e.to_string(),
        })
    }
}

/// A compiled insight: its description and a rule ready to evaluate.
#[derive(Clone, Debug)]
pub struct Insight {
    pub id: InsightId,
    pub name: String,
    pub description: String,
    pub severity: Severity,
    pub resource_types: Vec<ResourceType>,
    rule: Cond,
}

impl Insight {
    /// Compile a written insight, checking its types, operators, regexes and CIDRs.
    pub fn compile(spec: InsightSpec) -> Result<Insight, RuleError> {
        let InsightSpec {
            id,
            name,
            description,
            severity,
            resource_types,
            rule,
        } = spec;
        let cx = Cx { insight: &id };
        if id.trim().is_empty() {
            return Err(cx.invalid("id", "must not be empty"));
        }
        if resource_types.is_empty() {
            return Err(cx.invalid("resource_types", "must name at least one resource type"));
        }
        let mut types = Vec::with_capacity(resource_types.len());
        for t in &resource_types {
            let rtype = t
                .parse::<ResourceType>()
                .map_err(|_| RuleError::UnknownResourceType {
                    insight: id.clone(),
                    rtype: t.clone(),
                })?;
            if !types.contains(&rtype) {
                types.push(rtype);
            }
        }
        let rule = cx.cond(&rule, "rule")?;
        Ok(Insight {
            id: InsightId(id),
            name,
            description,
            severity,
            resource_types: types,
            rule,
        })
    }

    /// Whether the insight raises a finding on `r`: `r` is of one of its types and the rule
    /// holds. `now` is the instant age operators measure from.
    pub fn matches(&self, r: &Resource, now: Timestamp) -> bool {
        self.matches_subject(&Subject::of(r), now)
    }

    /// [`Insight::matches`] over a resource's borrowed fields.
    pub fn matches_subject(&self, s: &Subject<'_>, now: Timestamp) -> bool {
        self.resource_types.contains(&s.rtype) && self.rule.eval(&Ctx { s, now }, s.properties)
    }

    /// Whether this insight's verdict on a resource follows from the resource's type and
    /// properties alone (and the evaluation time): resources that share them share it.
    /// False when the rule reads the tags or a field such as the id, name or region.
    pub(crate) fn judges_properties_only(&self) -> bool {
        self.rule.reads_only_properties()
    }

    /// Add to `top` every part of the properties this insight's rule reads, and say
    /// whether it reads the tags.
    pub(crate) fn project(&self, top: &mut Projection) -> bool {
        let mut tags = false;
        let mut cur: Vec<Step> = Vec::new();
        self.rule.project(top, &mut cur, &mut tags);
        tags
    }
}

/// The fields of one resource an insight reads, borrowed: from a decoded [`Resource`]
/// ([`Subject::of`]) or straight from a stored row, where `properties` may be only the
/// [`Projection`] of the stored JSON that the catalog's insights read.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub uid: &'a str,
    pub cloud: &'a str,
    pub provider: &'a str,
    pub account: &'a str,
    pub region: &'a str,
    pub rtype: ResourceType,
    pub id: &'a str,
    pub name: &'a str,
    pub tags: &'a BTreeMap<String, String>,
    pub properties: &'a Value,
}

impl<'a> Subject<'a> {
    pub fn of(r: &'a Resource) -> Subject<'a> {
        Subject {
            uid: r.uid.as_str(),
            cloud: r.cloud.as_str(),
            provider: r.provider.as_str(),
            account: &r.account,
            region: &r.region,
            rtype: r.rtype,
            id: &r.id,
            name: &r.name,
            tags: &r.tags,
            properties: &r.properties,
        }
    }
}

// ---------------------------------------------------------------------------------------
// projection: which parts of the properties a set of rules reads

/// A tree of the object keys some rule reads below one value. Arrays are transparent: the
/// elements of an array found at a node are projected with that same node (as `any`/`all`
/// evaluate each element, and a numeric segment indexes one). A node a test reads as a whole
/// (`eq`, `empty`, `exists`, ...) keeps its value whole.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Projection {
    /// Keep the whole value found here.
    pub whole: bool,
    /// Keys read below this node, sorted.
    pub keys: Vec<(Box<str>, Projection)>,
}

impl Projection {
    /// The node for `key`, created when missing.
    fn child(&mut self, key: &str) -> &mut Projection {
        let at = match self.keys.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => i,
            Err(i) => {
                self.keys.insert(i, (key.into(), Projection::default()));
                i
            }
        };
        &mut self.keys[at].1
    }

    /// The node for `key`, if some rule reads it.
    pub fn get(&self, key: &str) -> Option<&Projection> {
        self.keys
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &self.keys[i].1)
    }

    /// True when no rule reads anything below this node.
    pub fn is_empty(&self) -> bool {
        !self.whole && self.keys.is_empty()
    }

    /// Apply `f` to every node `segs` leads to from here. A numeric segment leads both to
    /// the key of that name and, arrays being transparent, to this node itself.
    fn reach(&mut self, segs: &[Seg], f: &mut dyn FnMut(&mut Projection)) {
        match segs.split_first() {
            None => f(self),
            Some((seg, rest)) => {
                if seg.index.is_some() {
                    self.reach(rest, f);
                }
                self.child(&seg.key).reach(rest, f);
            }
        }
    }
}

/// One step from the properties root to a current value: the segments of a path under
/// which an `any`/`all` evaluates its condition.
type Step = Box<[Seg]>;

// ---------------------------------------------------------------------------------------
// compiled form

#[derive(Clone, Debug)]
enum Cond {
    And(Box<[Cond]>),
    Or(Box<[Cond]>),
    Not(Box<Cond>),
    Test { path: Path, test: Test },
}

#[derive(Clone, Debug)]
enum Test {
    Eq(Lit),
    Ne(Lit),
    Cmp(CmpOp, f64),
    In(Box<[Lit]>),
    Contains(Lit),
    Exists(bool),
    Empty(bool),
    HasKeys(Box<[Box<str>]>),
    Regex(Regex),
    OlderThanDays(f64),
    NewerThanDays(f64),
    CidrContains(IpNet),
    CidrIsWorld(bool),
    Any(Box<Cond>),
    All(Box<Cond>),
}

#[derive(Clone, Copy, Debug)]
enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
}

/// A scalar literal, with its loose readings parsed once.
#[derive(Clone, Debug)]
enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str {
        s: Box<str>,
        num: Option<f64>,
        boolean: Option<bool>,
    },
}

#[derive(Clone, Debug)]
struct Path {
    root: Root,
    segs: Box<[Seg]>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Root {
    /// The current value: `properties` at the top, the element inside `any`/`all`.
    Current,
    Field(Field),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Field {
    Id,
    Name,
    Region,
    Account,
    Type,
    Cloud,
    Provider,
    Uid,
    Tags,
    Properties,
}

#[derive(Clone, Debug)]
struct Seg {
    key: Box<str>,
    index: Option<usize>,
}

// ---------------------------------------------------------------------------------------
// compilation

struct Cx<'a> {
    insight: &'a str,
}

const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "in",
    "contains",
    "exists",
    "absent",
    "empty",
    "has_keys",
    "regex",
    "older_than_days",
    "newer_than_days",
    "cidr_contains",
    "cidr_is_world",
    "any",
    "all",
];

impl Cx<'_> {
    fn invalid(&self, at: &str, reason: impl Into<String>) -> RuleError {
        RuleError::Invalid {
            insight: self.insight.to_string(),
            at: at.to_string(),
            reason: reason.into(),
        }
    }

    fn cond(&self, v: &Value, at: &str) -> Result<Cond, RuleError> {
        let obj = v
            .as_object()
            .ok_or_else(|| self.invalid(at, "a condition must be an object"))?;
        for comb in ["and", "or", "not"] {
            if let Some(arg) = obj.get(comb) {
                if obj.len() != 1 {
                    return Err(self.invalid(at, format!("`{comb}` must be the only key")));
                }
                let here = format!("{at}.{comb}");
                return match comb {
                    "not" => Ok(Cond::Not(Box::new(self.cond(arg, &here)?))),
                    _ => {
                        let list = arg
                            .as_array()
                            .ok_or_else(|| self.invalid(&here, "must be a list of conditions"))?;
                        if list.is_empty() {
                            return Err(self.invalid(&here, "must not be empty"));
                        }
                        let conds = list
                            .iter()
                            .enumerate()
                            .map(|(i, c)| self.cond(c, &format!("{here}[{i}]")))
                            .collect::<Result<Vec<_>, _>>()?
                            .into_boxed_slice();
                        Ok(if comb == "and" {
                            Cond::And(conds)
                        } else {
                            Cond::Or(conds)
                        })
                    }
                };
            }
        }
        let path = match obj.get("path") {
            None => Path {
                root: Root::Current,
                segs: Box::new([]),
            },
            Some(p) => self.path(p, &format!("{at}.path"))?,
        };
        let mut ops = obj.iter().filter(|(k, _)| k.as_str() != "path");
        let (op, arg) = match (ops.next(), ops.next()) {
            (Some(one), None) => one,
            (None, _) => return Err(self.invalid(at, "a condition needs an operator")),
            (Some((a, _)), Some((b, _))) => {
                // name an unknown key first: it is the likelier mistake
                for k in [a, b] {
                    if !OPERATORS.contains(&k.as_str()) {
                        return Err(self.unknown_op(at, k));
                    }
                }
                return Err(self.invalid(
                    at,
                    format!("one operator per condition, found {a:?} and {b:?}"),
                ));
            }
        };
        let here = format!("{at}.{op}");
        let test = self.test(op, arg, &here, at)?;
        if matches!(test, Test::Any(_) | Test::All(_))
            && !matches!(path.root, Root::Current | Root::Field(Field::Properties))
        {
            return Err(self.invalid(&here, "applies to JSON lists under properties only"));
        }
        Ok(Cond::Test { path, test })
    }

    fn unknown_op(&self, at: &str, op: &str) -> RuleError {
        RuleError::UnknownOperator {
            insight: self.insight.to_string(),
            at: at.to_string(),
            op: op.to_string(),
        }
    }

    fn test(&self, op: &str, arg: &Value, here: &str, at: &str) -> Result<Test, RuleError> {
        Ok(match op {
            "eq" => Test::Eq(self.lit(arg, here)?),
            "ne" => Test::Ne(self.lit(arg, here)?),
            "lt" => Test::Cmp(CmpOp::Lt, self.number(arg, here)?),
            "le" => Test::Cmp(CmpOp::Le, self.number(arg, here)?),
            "gt" => Test::Cmp(CmpOp::Gt, self.number(arg, here)?),
            "ge" => Test::Cmp(CmpOp::Ge, self.number(arg, here)?),
            "in" => {
                let list = arg
                    .as_array()
                    .ok_or_else(|| self.invalid(here, "must be a list of scalars"))?;
                Test::In(
                    list.iter()
                        .enumerate()
                        .map(|(i, v)| self.lit(v, &format!("{here}[{i}]")))
                        .collect::<Result<Vec<_>, _>>()?
                        .into_boxed_slice(),
                )
            }
            "contains" => Test::Contains(self.lit(arg, here)?),
            "exists" => Test::Exists(self.boolean(arg, here)?),
            "absent" => Test::Exists(!self.boolean(arg, here)?),
            "empty" => Test::Empty(self.boolean(arg, here)?),
            "has_keys" => {
                let list = arg
                    .as_array()
                    .ok_or_else(|| self.invalid(here, "must be a list of keys"))?;
                let keys = list
                    .iter()
                    .map(|k| {
                        k.as_str()
                            .map(Box::<str>::from)
                            .ok_or_else(|| self.invalid(here, "keys must be strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Test::HasKeys(keys.into_boxed_slice())
            }
            "regex" => {
                let pat = arg
                    .as_str()
                    .ok_or_else(|| self.invalid(here, "must be a string"))?;
                Test::Regex(Regex::new(pat).map_err(|e| RuleError::BadRegex {
                    insight: self.insight.to_string(),
                    at: here.to_string(),
                    reason: e.to_string(),
                })?)
            }
            "older_than_days" | "newer_than_days" => {
                let days = self.number(arg, here)?;
                if days.is_nan() || days < 0.0 {
                    return Err(self.invalid(here, "must be a non-negative number of days"));
                }
                if op == "older_than_days" {
                    Test::OlderThanDays(days)
                } else {
                    Test::NewerThanDays(days)
                }
            }
            "cidr_contains" => {
                let text = arg
                    .as_str()
                    .ok_or_else(|| self.invalid(here, "must be a CIDR string"))?;
                let net = parse_net(text).ok_or_else(|| RuleError::BadCidr {
                    insight: self.insight.to_string(),
                    at: here.to_string(),
                    value: text.to_string(),
                    reason: "not an address or network".to_string(),
                })?;
                Test::CidrContains(net)
            }
            "cidr_is_world" => Test::CidrIsWorld(self.boolean(arg, here)?),
            "any" => Test::Any(Box::new(self.cond(arg, here)?)),
            "all" => Test::All(Box::new(self.cond(arg, here)?)),
            other => return Err(self.unknown_op(at, other)),
        })
    }

    fn lit(&self, v: &Value, at: &str) -> Result<Lit, RuleError> {
        Ok(match v {
            Value::Null => Lit::Null,
            Value::Bool(b) => Lit::Bool(*b),
            Value::Number(n) => Lit::Num(
                n.as_f64()
                    .ok_or_else(|| self.invalid(at, "number out of range"))?,
            ),
            Value::String(s) => Lit::Str {
                num: parse_num(s),
                boolean: parse_bool(s),
                s: s.as_str().into(),
            },
            Value::Array(_) | Value::Object(_) => {
                return Err(self.invalid(at, "must be a scalar (string, number, boolean, null)"))
            }
        })
    }

    fn number(&self, v: &Value, at: &str) -> Result<f64, RuleError> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => parse_num(s),
            _ => None,
        }
        .ok_or_else(|| self.invalid(at, "must be a number"))
    }

    fn boolean(&self, v: &Value, at: &str) -> Result<bool, RuleError> {
        v.as_bool()
            .ok_or_else(|| self.invalid(at, "must be true or false"))
    }

    fn path(&self, v: &Value, at: &str) -> Result<Path, RuleError> {
        let parts: Vec<String> = match v {
            Value::String(s) => {
                if s.is_empty() {
                    return Err(self.invalid(at, "must not be empty"));
                }
                s.split('.').map(str::to_string).collect()
            }
            Value::Array(list) if !list.is_empty() => list
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.invalid(at, "segments must be strings"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(self.invalid(at, "must be a string or a list of segments")),
        };
        if parts.iter().any(String::is_empty) {
            return Err(self.invalid(at, "has an empty segment"));
        }
        let mut rest = parts.as_slice();
        let root = match rest.first().map(String::as_str) {
            Some("$") => {
                let field = match rest.get(1).map(String::as_str) {
                    Some("id") => Field::Id,
                    Some("name") => Field::Name,
                    Some("region") => Field::Region,
                    Some("account") => Field::Account,
                    Some("type") => Field::Type,
                    Some("cloud") => Field::Cloud,
                    Some("provider") => Field::Provider,
                    Some("uid") => Field::Uid,
                    Some("tags") => Field::Tags,
                    Some("properties") => Field::Properties,
                    Some(other) => {
                        return Err(self.invalid(
                            at,
                            format!(
                                "unknown resource field {other:?} (id, name, region, account, \
                                 type, cloud, provider, uid, tags, properties)"
                            ),
                        ))
                    }
                    None => return Err(self.invalid(at, "`$` must name a resource field")),
                };
                rest = &rest[2..];
                let max = match field {
                    Field::Properties => usize::MAX,
                    Field::Tags => 1,
                    _ => 0,
                };
                if rest.len() > max {
                    return Err(self.invalid(at, "goes below a field that has no children"));
                }
                Root::Field(field)
            }
            Some("@") => {
                rest = &rest[1..];
                Root::Current
            }
            _ => Root::Current,
        };
        let segs = rest
            .iter()
            .map(|k| Seg {
                index: k.parse().ok(),
                key: k.as_str().into(),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ok(Path { root, segs })
    }
}

// ---------------------------------------------------------------------------------------
// evaluation

struct Ctx<'a> {
    s: &'a Subject<'a>,
    now: Timestamp,
}

/// A value a path reached.
#[derive(Clone, Copy)]
enum Val<'a> {
    Missing,
    Json(&'a Value),
    Str(&'a str),
    Tags(&'a BTreeMap<String, String>),
}

/// The scalar reading of a value, for comparisons.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Complex,
}

impl Cond {
    fn eval(&self, cx: &Ctx<'_>, cur: &Value) -> bool {
        match self {
            Cond::And(cs) => cs.iter().all(|c| c.eval(cx, cur)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(cx, cur)),
            Cond::Not(c) => !c.eval(cx, cur),
            Cond::Test { path, test } => test.eval(cx, path.resolve(cx.s, cur)),
        }
    }

    /// Whether this condition reads nothing but the properties and the type (the
    /// provider follows from the type).
    fn reads_only_properties(&self) -> bool {
        match self {
            Cond::And(cs) | Cond::Or(cs) => cs.iter().all(Cond::reads_only_properties),
            Cond::Not(c) => c.reads_only_properties(),
            Cond::Test { path, test } => {
                let root = matches!(
                    path.root,
                    Root::Current | Root::Field(Field::Properties | Field::Type | Field::Provider)
                );
                root && match test {
                    Test::Any(c) | Test::All(c) => c.reads_only_properties(),
                    _ => true,
                }
            }
        }
    }

    /// Mark in `top` what this condition reads. `cur` is the list of paths (from the
    /// properties root) that lead to the current value: empty at the top, one more `any`
    /// or `all` path per nesting level.
    fn project(&self, top: &mut Projection, cur: &mut Vec<Step>, tags: &mut bool) {
        match self {
            Cond::And(cs) | Cond::Or(cs) => {
                for c in cs.iter() {
                    c.project(top, cur, tags);
                }
            }
            Cond::Not(c) => c.project(top, cur, tags),
            Cond::Test { path, test } => {
                let base: &[Step] = match path.root {
                    Root::Current => cur,
                    Root::Field(Field::Properties) => &[],
                    Root::Field(Field::Tags) => {
                        *tags = true;
                        return;
                    }
                    Root::Field(_) => return,
                };
                let mut full: Vec<Step> = base.to_vec();
                full.push(path.segs.clone());
                match test {
                    Test::Any(c) | Test::All(c) => {
                        // the nested condition reads relative to this path's value
                        let mut inner = full;
                        c.project(top, &mut inner, tags);
                    }
                    _ => reach_all(top, &full, &mut |n| n.whole = true),
                }
            }
        }
    }
}

/// Apply `f` to every node the chain of paths `steps` leads to from `top`.
fn reach_all(top: &mut Projection, steps: &[Step], f: &mut dyn FnMut(&mut Projection)) {
    match steps.split_first() {
        None => f(top),
        Some((first, rest)) => top.reach(first, &mut |n| reach_all(n, rest, f)),
    }
}

impl Path {
    fn resolve<'a>(&self, r: &Subject<'a>, cur: &'a Value) -> Val<'a> {
        let start: &'a Value = match self.root {
            Root::Current => cur,
            Root::Field(f) => {
                let s: &'a str = match f {
                    Field::Id => r.id,
                    Field::Name => r.name,
                    Field::Region => r.region,
                    Field::Account => r.account,
                    Field::Type => r.rtype.as_str(),
                    Field::Cloud => r.cloud,
                    Field::Provider => r.provider,
                    Field::Uid => r.uid,
                    Field::Tags => {
                        return match self.segs.first() {
                            None => Val::Tags(r.tags),
                            Some(seg) => {
                                r.tags.get(&*seg.key).map_or(Val::Missing, |v| Val::Str(v))
                            }
                        }
                    }
                    Field::Properties => return walk(r.properties, &self.segs),
                };
                return Val::Str(s);
            }
        };
        walk(start, &self.segs)
    }
}

fn walk<'a>(mut v: &'a Value, segs: &[Seg]) -> Val<'a> {
    for seg in segs {
        let next = match v {
            Value::Object(m) => m.get(&*seg.key),
            Value::Array(a) => seg.index.and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return Val::Missing,
        }
    }
    Val::Json(v)
}

impl<'a> Val<'a> {
    fn scalar(self) -> Scalar<'a> {
        match self {
            Val::Missing | Val::Json(Value::Null) => Scalar::Null,
            Val::Json(Value::Bool(b)) => Scalar::Bool(*b),
            Val::Json(Value::Number(n)) => n.as_f64().map_or(Scalar::Complex, Scalar::Num),
            Val::Json(Value::String(s)) => Scalar::Str(s),
            Val::Str(s) => Scalar::Str(s),
            Val::Json(_) | Val::Tags(_) => Scalar::Complex,
        }
    }

    fn present(self) -> bool {
        !matches!(self, Val::Missing | Val::Json(Value::Null))
    }

    fn is_empty(self) -> bool {
        match self {
            Val::Missing | Val::Json(Value::Null) => true,
            Val::Json(Value::String(s)) => s.is_empty(),
            Val::Json(Value::Array(a)) => a.is_empty(),
            Val::Json(Value::Object(m)) => m.is_empty(),
            Val::Json(_) => false,
            Val::Str(s) => s.is_empty(),
            Val::Tags(t) => t.is_empty(),
        }
    }

    fn number(self) -> Option<f64> {
        match self.scalar() {
            Scalar::Num(n) => Some(n),
            Scalar::Str(s) => parse_num(s),
            _ => None,
        }
    }

    fn text(self) -> Option<&'a str> {
        match self.scalar() {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn timestamp(self) -> Option<Timestamp> {
        match self.scalar() {
            Scalar::Str(s) => parse_timestamp(s),
            Scalar::Num(n) => epoch(n),
            _ => None,
        }
    }
}

impl Test {
    fn eval(&self, cx: &Ctx<'_>, v: Val<'_>) -> bool {
        match self {
            Test::Eq(lit) => loose_eq(v.scalar(), lit),
            Test::Ne(lit) => !loose_eq(v.scalar(), lit),
            Test::Cmp(op, rhs) => v.number().is_some_and(|x| match op {
                CmpOp::Lt => x < *rhs,
                CmpOp::Le => x <= *rhs,
                CmpOp::Gt => x > *rhs,
                CmpOp::Ge => x >= *rhs,
            }),
            Test::In(lits) => {
                let s = v.scalar();
                lits.iter().any(|l| loose_eq_ref(&s, l))
            }
            Test::Contains(lit) => match v {
                Val::Json(Value::Array(items)) => {
                    items.iter().any(|e| loose_eq(Val::Json(e).scalar(), lit))
                }
                Val::Json(Value::Object(m)) => lit_text(lit).is_some_and(|k| m.contains_key(k)),
                Val::Tags(t) => lit_text(lit).is_some_and(|k| t.contains_key(k)),
                _ => match (v.text(), lit_text(lit)) {
                    (Some(hay), Some(needle)) => hay.contains(needle),
                    _ => false,
                },
            },
            Test::Exists(want) => v.present() == *want,
            Test::Empty(want) => v.is_empty() == *want,
            Test::HasKeys(keys) => match v {
                Val::Tags(t) => keys.iter().all(|k| t.contains_key(&**k)),
                Val::Json(Value::Object(m)) => keys.iter().all(|k| m.contains_key(&**k)),
                Val::Missing | Val::Json(Value::Null) => keys.is_empty(),
                _ => false,
            },
            Test::Regex(re) => match v.scalar() {
                Scalar::Str(s) => re.is_match(s),
                Scalar::Bool(b) => re.is_match(if b { "true" } else { "false" }),
                Scalar::Num(_) => match v {
                    Val::Json(Value::Number(n)) => re.is_match(&n.to_string()),
                    _ => false,
                },
                Scalar::Null | Scalar::Complex => false,
            },
            Test::OlderThanDays(days) => v.timestamp().is_some_and(|t| age_days(cx.now, t) > *days),
            Test::NewerThanDays(days) => v.timestamp().is_some_and(|t| age_days(cx.now, t) < *days),
            Test::CidrContains(outer) => v
                .text()
                .and_then(parse_net)
                .is_some_and(|inner| outer.contains(&inner)),
            Test::CidrIsWorld(want) => v
                .text()
                .and_then(parse_net)
                .is_some_and(|n| (n.prefix_len() == 0) == *want),
            Test::Any(c) => match v {
                Val::Json(Value::Array(items)) => items.iter().any(|e| c.eval(cx, e)),
                Val::Missing | Val::Json(Value::Null) => false,
                Val::Json(one) => c.eval(cx, one),
                Val::Str(_) | Val::Tags(_) => false,
            },
            Test::All(c) => match v {
                Val::Json(Value::Array(items)) => items.iter().all(|e| c.eval(cx, e)),
                Val::Missing | Val::Json(Value::Null) => true,
                Val::Json(one) => c.eval(cx, one),
                Val::Str(_) | Val::Tags(_) => false,
            },
        }
    }
}

fn loose_eq(v: Scalar<'_>, lit: &Lit) -> bool {
    loose_eq_ref(&v, lit)
}

fn loose_eq_ref(v: &Scalar<'_>, lit: &Lit) -> bool {
    match (v, lit) {
        (Scalar::Null, Lit::Null) => true,
        (Scalar::Bool(a), Lit::Bool(b)) => a == b,
        (Scalar::Bool(a), Lit::Str { boolean, .. }) => *boolean == Some(*a),
        (Scalar::Num(a), Lit::Num(b)) => a == b,
        (Scalar::Num(a), Lit::Str { num, .. }) => *num == Some(*a),
        (Scalar::Str(a), Lit::Str { s, num, .. }) => {
            *a == &**s || num.is_some_and(|n| parse_num(a) == Some(n))
        }
        (Scalar::Str(a), Lit::Num(b)) => parse_num(a) == Some(*b),
        (Scalar::Str(a), Lit::Bool(b)) => parse_bool(a) == Some(*b),
        _ => false,
    }
}

fn lit_text(lit: &Lit) -> Option<&str> {
    match lit {
        Lit::Str { s, .. } => Some(s),
        _ => None,
    }
}

fn parse_num(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    let t = s.trim();
    t.parse::<IpNet>()
        .ok()
        .or_else(|| t.parse::<IpAddr>().ok().map(IpNet::from))
}

fn parse_timestamp(s: &str) -> Option<Timestamp> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(n.and_utc());
        }
    }
    parse_num(t).and_then(epoch)
}

fn epoch(secs: f64) -> Option<Timestamp> {
    if !secs.is_finite() {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9) as u32;
    Utc.timestamp_opt(whole as i64, nanos).single()
}

fn age_days(now: Timestamp, then: Timestamp) -> f64 {
    (now - then).num_milliseconds() as f64 / 86_400_000.0
}

/// Replace every string equal to `placeholder` in `v` with `with` (used to build built-in
/// insights from settings).
pub(crate) fn substitute(v: &mut Value, placeholder: &str, with: &Value) {
    match v {
        Value::String(s) if s == placeholder => *v = with.clone(),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| substitute(i, placeholder, with)),
        Value::Object(m) => m
            .iter_mut()
            .for_each(|(_, i)| substitute(i, placeholder, with)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_proto::CloudId;
    use serde_json::json;

    fn now() -> Timestamp {
        Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    fn resource(rtype: ResourceType, props: Value) -> Resource {
        let mut tags = BTreeMap::new();
        tags.insert("Owner".to_string(), "alice".to_string());
        tags.insert("cost.center".to_string(), "42".to_string());
        Resource::harvested(
            &CloudId("c1".into()),
            "123456789012",
            "eu-west-1",
            rtype,
            "i-1",
            "web",
            tags,
            props,
            now(),
        )
    }

    fn insight(rule: Value) -> Result<Insight, RuleError> {
        Insight::compile(InsightSpec {
            id: "t".into(),
            name: "test".into(),
            description: "test".into(),
            severity: Severity::Low,
            resource_types: vec!["aws.ec2.instance".into()],
            rule,
        })
    }

    /// Whether `rule` holds on an instance with properties `props`.
    fn check(rule: Value, props: Value) -> bool {
        insight(rule)
            .expect("rule compiles")
            .matches(&resource(ResourceType::AwsEc2Instance, props), now())
    }

    #[test]
    fn a_verdict_is_shared_only_when_the_rule_reads_nothing_but_properties_and_type() {
        let shared = |rule: Value| insight(rule).expect("compiles").judges_properties_only();
        assert!(shared(json!({"path": "state.name", "eq": "running"})));
        assert!(shared(json!({"and": [
            {"path": "$.type", "eq": "aws.ec2.instance"},
            {"path": "$.properties.list", "any": {"path": "k", "eq": 1}}
        ]})));
        assert!(!shared(json!({"path": "$.name", "eq": "web"})));
        assert!(!shared(json!({"path": "$.tags", "contains": "Owner"})));
        assert!(!shared(
            json!({"not": {"path": "$.region", "eq": "us-east-1"}})
        ));
        assert!(!shared(json!({"or": [
            {"path": "state.name", "eq": "running"},
            {"path": "list", "all": {"path": "$.id", "eq": "i-1"}}
        ]})));
    }

    #[test]
    fn comparisons_are_loose() {
        let p = json!({"port": "22", "flag": "true", "n": 7, "b": false, "s": "abc"});
        assert!(check(json!({"path": "port", "eq": 22}), p.clone()));
        assert!(check(json!({"path": "port", "eq": "22.0"}), p.clone()));
        assert!(!check(json!({"path": "port", "eq": 23}), p.clone()));
        assert!(check(json!({"path": "flag", "eq": true}), p.clone()));
        assert!(check(json!({"path": "b", "eq": "false"}), p.clone()));
        assert!(check(json!({"path": "n", "eq": "7"}), p.clone()));
        assert!(check(json!({"path": "s", "ne": "abd"}), p.clone()));
        assert!(check(json!({"path": "missing", "ne": "x"}), p.clone()));
        assert!(check(json!({"path": "missing", "eq": null}), p.clone()));
        assert!(check(json!({"path": "port", "le": 22}), p.clone()));
        assert!(check(json!({"path": "port", "lt": "23"}), p.clone()));
        assert!(!check(json!({"path": "port", "gt": 22}), p.clone()));
        assert!(check(json!({"path": "n", "ge": 7}), p.clone()));
        assert!(!check(json!({"path": "s", "ge": 0}), p.clone()));
        assert!(!check(json!({"path": "missing", "lt": 100}), p.clone()));
    }

    #[test]
    fn membership_existence_and_regex() {
        let p = json!({"state": {"name": "running"}, "list": ["a", "22"], "empty": [],
                       "nothing": null, "obj": {"k": 1}, "s": "hello world"});
        assert!(check(
            json!({"path": "state.name", "in": ["stopped", "running"]}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "state.name", "in": ["terminated"]}),
            p.clone()
        ));
        assert!(check(json!({"path": "list", "contains": 22}), p.clone()));
        assert!(!check(json!({"path": "list", "contains": "b"}), p.clone()));
        assert!(check(json!({"path": "s", "contains": "lo wo"}), p.clone()));
        assert!(check(json!({"path": "obj", "contains": "k"}), p.clone()));
        assert!(check(
            json!({"path": "$.tags", "contains": "Owner"}),
            p.clone()
        ));
        assert!(check(json!({"path": "state", "exists": true}), p.clone()));
        assert!(check(json!({"path": "nothing", "absent": true}), p.clone()));
        assert!(check(
            json!({"path": "missing", "exists": false}),
            p.clone()
        ));
        assert!(!check(json!({"path": "state", "absent": true}), p.clone()));
        assert!(check(json!({"path": "empty", "empty": true}), p.clone()));
        assert!(check(json!({"path": "nothing", "empty": true}), p.clone()));
        assert!(check(json!({"path": "missing", "empty": true}), p.clone()));
        assert!(check(json!({"path": "list", "empty": false}), p.clone()));
        assert!(check(json!({"path": "s", "regex": "^hel+o "}), p.clone()));
        assert!(!check(json!({"path": "s", "regex": "^world"}), p.clone()));
        assert!(check(json!({"path": "list.1", "eq": 22}), p.clone()));
        assert!(check(json!({"path": "obj", "has_keys": ["k"]}), p.clone()));
        assert!(!check(
            json!({"path": "obj", "has_keys": ["k", "j"]}),
            p.clone()
        ));
    }

    #[test]
    fn resource_fields_and_tags_are_reachable() {
        let p = json!({});
        assert!(check(json!({"path": "$.id", "eq": "i-1"}), p.clone()));
        assert!(check(json!({"path": "$.name", "eq": "web"}), p.clone()));
        assert!(check(
            json!({"path": "$.region", "regex": "^eu-"}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "$.account", "eq": "123456789012"}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "$.type", "eq": "aws.ec2.instance"}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "$.tags.Owner", "eq": "alice"}),
            p.clone()
        ));
        assert!(check(
            json!({"path": ["$", "tags", "cost.center"], "eq": 42}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "$.tags.Team", "absent": true}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "$.tags", "has_keys": ["Owner"]}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "$.tags", "has_keys": ["Owner", "Team"]}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "$.properties.a.b", "eq": 1}),
            json!({"a": {"b": 1}})
        ));
    }

    #[test]
    fn any_all_and_or_not_nest_with_relative_paths() {
        let p = json!({"perms": [
            {"proto": "tcp", "from": "80", "to": "80", "ranges": [{"cidr": "10.0.0.0/8"}]},
            {"proto": "tcp", "from": "20", "to": "25", "ranges": [{"cidr": "0.0.0.0/0"}]}
        ], "names": ["alias/a", "alias/b"]});
        let covers_22_world = json!({"path": "perms", "any": {"and": [
            {"path": "proto", "in": ["tcp", "-1"]},
            {"or": [{"path": "proto", "eq": "-1"},
                    {"and": [{"path": "from", "le": 22}, {"path": "to", "ge": 22}]}]},
            {"path": "ranges", "any": {"path": "cidr", "cidr_is_world": true}}
        ]}});
        assert!(check(covers_22_world.clone(), p.clone()));
        let mut closed = p.clone();
        closed["perms"][1]["ranges"][0]["cidr"] = json!("192.168.0.0/16");
        assert!(!check(covers_22_world, closed));
        assert!(check(
            json!({"path": "names", "all": {"regex": "^alias/"}}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "names", "all": {"path": "@", "eq": "alias/a"}}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "missing", "all": {"eq": 1}}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "missing", "any": {"eq": 1}}),
            p.clone()
        ));
        assert!(check(
            json!({"not": {"path": "names", "contains": "alias/c"}}),
            p.clone()
        ));
        // a `$` path inside `any` still reaches the resource
        assert!(check(
            json!({"path": "names", "any": {"path": "$.tags.Owner", "eq": "alice"}}),
            p
        ));
    }

    #[test]
    fn age_operators_use_the_given_now() {
        let p = json!({"old": "2024-03-02T12:00:00Z", "young": "2024-03-04T12:00:00+00:00",
                       "naive": "2024-03-02T12:00:00", "epoch": 1709380800.0, "bad": "yesterday"});
        // now is 2024-06-01T12:00Z: "old" is 91 days before, "young" 89
        assert!(check(
            json!({"path": "old", "older_than_days": 90}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "young", "older_than_days": 90}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "young", "newer_than_days": 90}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "naive", "older_than_days": 90}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "epoch", "older_than_days": 90}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "bad", "older_than_days": 0}),
            p.clone()
        ));
        assert!(!check(json!({"path": "missing", "older_than_days": 0}), p));
    }

    #[test]
    fn cidr_operators() {
        let p = json!({"v4": "0.0.0.0/0", "v6": "::/0", "net": "10.1.2.0/24", "ip": "10.9.9.9",
                       "junk": "not-a-cidr"});
        assert!(check(
            json!({"path": "v4", "cidr_is_world": true}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "v6", "cidr_is_world": true}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "net", "cidr_is_world": true}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "net", "cidr_is_world": false}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "junk", "cidr_is_world": false}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "net", "cidr_contains": "10.0.0.0/8"}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "ip", "cidr_contains": "10.0.0.0/8"}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "v4", "cidr_contains": "10.0.0.0/8"}),
            p.clone()
        ));
        assert!(check(
            json!({"path": "net", "cidr_contains": "0.0.0.0/0"}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "v6", "cidr_contains": "0.0.0.0/0"}),
            p.clone()
        ));
        assert!(!check(
            json!({"path": "junk", "cidr_contains": "0.0.0.0/0"}),
            p
        ));
    }

    #[test]
    fn projection_names_what_the_rule_reads() {
        let i = insight(json!({"and": [
            {"path": "a.b", "eq": 1},
            {"path": "list", "any": {"or": [
                {"path": "x", "exists": true},
                {"path": "$.properties.top", "empty": false},
                {"path": "inner", "all": {"path": "@", "eq": "v"}}
            ]}},
            {"path": "arr.0.k", "eq": 2},
            {"path": "$.tags.Owner", "exists": true},
            {"path": "$.name", "eq": "n"}
        ]}))
        .expect("compiles");
        let mut p = Projection::default();
        assert!(i.project(&mut p), "the rule reads the tags");
        let leaf = || Projection {
            whole: true,
            keys: vec![],
        };
        let node = |keys: Vec<(&str, Projection)>| Projection {
            whole: false,
            keys: keys.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        };
        let want = node(vec![
            ("a", node(vec![("b", leaf())])),
            // a numeric segment: the key "0", and through the array itself
            (
                "arr",
                node(vec![("0", node(vec![("k", leaf())])), ("k", leaf())]),
            ),
            ("list", node(vec![("inner", leaf()), ("x", leaf())])),
            ("top", leaf()),
        ]);
        assert_eq!(p, want);
    }

    #[test]
    fn matches_only_the_named_types() {
        let i = insight(json!({"path": "$.id", "exists": true})).expect("compiles");
        assert!(i.matches(&resource(ResourceType::AwsEc2Instance, json!({})), now()));
        assert!(!i.matches(&resource(ResourceType::AwsEc2Volume, json!({})), now()));
    }

    #[test]
    fn compile_errors_name_the_insight_and_the_bad_part() {
        let e = insight(json!({"and": [{"path": "a", "eq": 1}, {"path": "b", "eqq": 1}]}))
            .expect_err("unknown operator");
        assert_eq!(
            e,
            RuleError::UnknownOperator {
                insight: "t".into(),
                at: "rule.and[1]".into(),
                op: "eqq".into()
            }
        );
        assert!(e.to_string().contains("\"t\""), "{e}");
        assert!(e.to_string().contains("eqq"), "{e}");

        let e = insight(json!({"path": "a", "regex": "(unclosed"})).expect_err("bad regex");
        assert!(
            matches!(e, RuleError::BadRegex { ref at, .. } if at == "rule.regex"),
            "{e}"
        );

        let e =
            insight(json!({"path": "perms", "any": {"path": "c", "cidr_contains": "10.0.0.0/33"}}))
                .expect_err("bad cidr");
        assert!(
            matches!(e, RuleError::BadCidr { ref at, ref value, .. } if at == "rule.any.cidr_contains" && value == "10.0.0.0/33"),
            "{e}"
        );

        let e = Insight::compile(InsightSpec {
            id: "x".into(),
            name: "x".into(),
            description: "x".into(),
            severity: Severity::High,
            resource_types: vec!["aws.ec2.nothing".into()],
            rule: json!({"path": "a", "exists": true}),
        })
        .expect_err("unknown type");
        assert_eq!(
            e.to_string(),
            "insight \"x\": unknown resource type \"aws.ec2.nothing\""
        );

        for bad in [
            json!({"path": "a", "eq": 1, "ne": 2}),
            json!({"path": "a"}),
            json!({"path": "a", "lt": "many"}),
            json!({"path": "a", "eq": [1]}),
            json!({"path": "$.nope", "eq": 1}),
            json!({"path": "$.id.x", "eq": 1}),
            json!({"path": "$.tags", "any": {"eq": 1}}),
            json!({"and": []}),
            json!({"and": [], "or": []}),
            json!("not an object"),
            json!({"path": "a", "exists": "yes"}),
        ] {
            assert!(insight(bad.clone()).is_err(), "{bad} should not compile");
        }
    }

    #[test]
    fn specs_come_from_json_and_toml() {
        let toml_text = r#"
            id = "toml-one"
            name = "From TOML"
            description = "written in TOML"
            severity = "medium"
            resource_types = ["aws.ec2.volume"]
            [rule]
            and = [ { path = "encrypted", eq = false }, { path = "size", gt = 100 } ]
        "#;
        // the config crate hands custom insights over as serde values
        let spec: InsightSpec = config::Config::builder()
            .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
            .build()
            .expect("toml parses")
            .try_deserialize()
            .expect("spec deserializes");
        let i = Insight::compile(spec).expect("compiles");
        assert_eq!(i.severity, Severity::Medium);
        let vol = |enc: &str, size: &str| {
            resource(
                ResourceType::AwsEc2Volume,
                json!({"encrypted": enc, "size": size}),
            )
        };
        assert!(i.matches(&vol("false", "500"), now()));
        assert!(!i.matches(&vol("true", "500"), now()));
        assert!(!i.matches(&vol("false", "8"), now()));

        let e = InsightSpec::from_json("file.json", r#"{"id": "x", "bogus": 1}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("file.json"), "{e}");
    }
}
