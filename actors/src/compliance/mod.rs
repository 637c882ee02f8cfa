//! Compliance: insights evaluated over stored resources, and the findings they raise.
//!
//! Owns: the insight [`Catalog`] (the built-in insights, compiled from the rule language
//! in [`rules`]; see [`builtin`]) and [`run_compliance`], one pass of every insight over the
//! live resources of one cloud or all, which opens findings that hold and resolves those
//! that no longer do.
//!
//! Must never: load the whole estate into memory (resources are streamed in keyset pages),
//! evaluate on the async runtime's worker threads (each page goes to `spawn_blocking`), or
//! touch a cloud API: it reads the store and writes findings, nothing else.

pub mod actor;
pub mod builtin;
pub mod projection;
pub mod rules;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use palisade_proto::{
    CloudId, Finding, FindingState, Resource, ResourceType, ResourceUid, Timestamp,
};
use tracing::info;

use crate::store::{Facts, RawPage, ScanQuery, Store, StoreError};

pub use palisade_proto::{InsightId, Severity};
pub use rules::{Insight, InsightSpec, Projection, RuleError, Subject};

/// Every insight this node evaluates, compiled, with a plan per resource type. Cheap to
/// clone (shared).
#[derive(Clone, Debug)]
pub struct Catalog {
    insights: Arc<[Insight]>,
    plans: Arc<BTreeMap<ResourceType, TypePlan>>,
    /// Names the projections of `plans`: see [`Catalog::fingerprint`].
    fingerprint: i64,
}

/// How the resources of one type are evaluated: the insights naming the type (positions in
/// the catalog), the part of the properties they read and whether they read the tags.
#[derive(Debug, Default)]
struct TypePlan {
    insights: Vec<usize>,
    /// Per entry of `insights`: whether its verdict follows from the type and properties
    /// alone ([`Insight::judges_properties_only`]), so it is shared by every resource of
    /// a page with the same properties text.
    shared: Vec<bool>,
    projection: Projection,
    tags: bool,
}

/// One distinct (type, properties text) of a page: its parsed projection, and the verdicts
/// of the type's shared insights once the first resource with it was judged.
struct Parsed {
    value: serde_json::Value,
    verdicts: Option<Vec<bool>>,
}

impl Catalog {
    /// A catalog of compiled insights; ids must be unique.
    pub fn new(insights: Vec<Insight>) -> Result<Catalog, RuleError> {
        let mut plans: BTreeMap<ResourceType, TypePlan> = BTreeMap::new();
        for (i, insight) in insights.iter().enumerate() {
            if insights[..i].iter().any(|o| o.id == insight.id) {
                return Err(RuleError::Duplicate(insight.id.0.clone()));
            }
            for t in &insight.resource_types {
                let plan = plans.entry(*t).or_default();
                plan.insights.push(i);
                plan.shared.push(insight.judges_properties_only());
                plan.tags |= insight.project(&mut plan.projection);
            }
        }
        let fingerprint = fingerprint(&plans);
        Ok(Catalog {
            insights: insights.into(),
            plans: Arc::new(plans),
            fingerprint,
        })
    }

    /// The built-in insights, with `aws-ec2-missing-owner-tag` built from
    /// `settings.required_tags`.
    pub fn builtin(settings: &crate::settings::ComplianceSettings) -> Result<Catalog, RuleError> {
        Catalog::new(builtin::compile_all(settings)?)
    }

    pub fn list(&self) -> &[Insight] {
        &self.insights
    }

    pub fn get(&self, id: &str) -> Option<&Insight> {
        self.insights.iter().find(|i| i.id.as_str() == id)
    }

    /// The resource types some insight names, in a stable order.
    pub fn resource_types(&self) -> Vec<ResourceType> {
        self.plans.keys().copied().collect()
    }

    /// The part of the properties of `rtype` the insights read (empty when none names it).
    pub fn projection(&self, rtype: ResourceType) -> Option<&Projection> {
        self.plans.get(&rtype).map(|p| &p.projection)
    }

    /// Names what the catalog reads of each type's properties: two catalogs whose
    /// projections are equal share it, so facts one wrote serve the other.
    pub fn fingerprint(&self) -> i64 {
        self.fingerprint
    }

    /// This catalog as the store's [`Facts`] extractor.
    pub fn facts(&self) -> Arc<dyn Facts> {
        Arc::new(self.clone())
    }

    /// The insights that raise a finding on `r` at `now`.
    pub fn matching<'a>(
        &'a self,
        r: &'a Resource,
        now: Timestamp,
    ) -> impl Iterator<Item = &'a Insight> + 'a {
        self.plans
            .get(&r.rtype)
            .map(|p| p.insights.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|&i| &self.insights[i])
            .filter(move |insight| insight.matches(r, now))
    }

    /// Evaluate every insight over one stored page, parsing of each row's properties only
    /// what the insights of its type read.
    fn evaluate_page(&self, page: &RawPage, now: Timestamp) -> Result<PageOutcome, StoreError> {
        let mut out = PageOutcome {
            evaluated: 0,
            counts: vec![0; self.insights.len()],
            findings: Vec::new(),
        };
        let no_tags = BTreeMap::new();
        let mut parsed_tags: BTreeMap<String, String>;
        // Each distinct (type, text) of the page is parsed once, and judged once by the
        // insights that read only the properties. Facts are the few properties the
        // insights read, so many resources share them (every encrypted volume, every
        // running instance with the same state): parsing and dropping a `Value` costs
        // several times more than evaluating it.
        let mut parsed: foldhash::HashMap<(ResourceType, &str), Parsed> = HashMap::default();
        for r in page.iter() {
            let Some(plan) = self.plans.get(&r.rtype) else {
                continue;
            };
            out.evaluated += 1;
            let corrupt = |what: &str, e: serde_json::Error| {
                StoreError::Corrupt(format!("resource {}: {what}: {e}", r.uid))
            };
            let Parsed { value, verdicts } = match parsed.entry((r.rtype, r.properties)) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(Parsed {
                    value: projection::parse(r.properties, &plan.projection)
                        .map_err(|e| corrupt("properties", e))?,
                    verdicts: None,
                }),
            };
            let tags = if plan.tags && r.tags != "{}" {
                parsed_tags = serde_json::from_str(r.tags).map_err(|e| corrupt("tags", e))?;
                &parsed_tags
            } else {
                &no_tags
            };
            let subject = Subject {
                uid: r.uid,
                cloud: r.cloud,
                provider: r.provider.as_str(),
                account: r.account,
                region: r.region,
                rtype: r.rtype,
                id: r.id,
                name: r.name,
                tags,
                properties: value,
            };
            let verdicts = verdicts.get_or_insert_with(|| {
                plan.insights
                    .iter()
                    .zip(&plan.shared)
                    .map(|(&i, &shared)| shared && self.insights[i].matches_subject(&subject, now))
                    .collect()
            });
            for (j, &i) in plan.insights.iter().enumerate() {
                let holds = match plan.shared.get(j) {
                    Some(true) => verdicts.get(j).copied().unwrap_or(false),
                    _ => self.insights[i].matches_subject(&subject, now),
                };
                if !holds {
                    continue;
                }
                out.counts[i] += 1;
                out.findings.push(Finding {
                    insight: self.insights[i].id.clone(),
                    resource_uid: ResourceUid(r.uid.to_owned()),
                    resource: r.id.to_owned(),
                    resource_type: r.rtype,
                    region: r.region.to_owned(),
                    cloud: CloudId(r.cloud.to_owned()),
                    state: FindingState::Open,
                    first_seen: now,
                    last_seen: now,
                    resolved_at: None,
                });
            }
        }
        Ok(out)
    }
}

/// The facts format; bump it when what [`Catalog`] writes as facts changes shape.
const FACTS_FORMAT: &str = "palisade-facts-1";

/// A stable 63-bit hash of the projection of every type the plans name.
fn fingerprint(plans: &BTreeMap<ResourceType, TypePlan>) -> i64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(FACTS_FORMAT.as_bytes());
    for (rtype, plan) in plans {
        h.update(format!("\0{}\0{:?}", rtype.as_str(), plan.projection).as_bytes());
    }
    let digest = h.finalize();
    let mut top = [0u8; 8];
    top.copy_from_slice(&digest[..8]);
    // non-negative, so it reads the same in every SQL dialect and in logs
    (u64::from_be_bytes(top) >> 1) as i64
}

impl Facts for Catalog {
    fn fingerprint(&self) -> i64 {
        self.fingerprint
    }

    /// The properties projected to what the insights of `rtype` read, as JSON text.
    fn extract(&self, rtype: ResourceType, properties: &str) -> Result<Option<String>, String> {
        let Some(plan) = self.plans.get(&rtype) else {
            return Ok(None);
        };
        let projected =
            projection::parse(properties, &plan.projection).map_err(|e| e.to_string())?;
        serde_json::to_string(&projected)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

struct PageOutcome {
    evaluated: u64,
    /// Findings per insight, by position in the catalog.
    counts: Vec<u64>,
    findings: Vec<Finding>,
}

/// What one compliance run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ComplianceReport {
    /// Resources evaluated (live resources of the types some insight names).
    pub evaluated: u64,
    /// Findings that hold now (opened or kept open by this run).
    pub open: u64,
    /// Findings this run opened: new ones, and resolved ones that hold again.
    pub opened: u64,
    /// Findings this run resolved: they no longer hold, or their resource is gone.
    pub resolved: u64,
    /// Findings that hold now, per insight id; every insight of the catalog is listed.
    pub per_insight: BTreeMap<String, u64>,
}

/// Why a compliance run failed. The pages a failed run finished keep what it wrote (their
/// findings are exact as of its `now`); the rest of the estate keeps its earlier findings,
/// and the run is not recorded as completed.
#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("evaluation task failed: {0}")]
    Evaluation(String),
}

/// Findings a compliance run collects before it writes them (one `sync_findings` call): a
/// few MiB of memory.
pub const SYNC_FINDINGS: usize = 16 * 1024;

/// Evaluate every insight over the live resources of one cloud (or all), streaming keyset
/// pages of `page_size` from `store.scan_raw` (only the types some insight names; each row's
/// properties parsed only as far as the insights of its type read them, see [`projection`]),
/// and reconcile the findings with `store.sync_findings` over the uid range of the pages
/// evaluated since the last sync, `(last uid synced, this page's last uid]`, once they hold
/// [`SYNC_FINDINGS`] findings (one write transaction per some tens of thousands of findings,
/// not per page: a store rewrites the pages a transaction touches, so fewer, larger ones
/// write several times fewer bytes), then once more over the rest of the uid space
/// (`through = None`), which resolves the findings of resources that are gone and records
/// the run as completed. A run where nothing changed writes nothing but that record:
/// findings that still hold are left untouched (their reported `last_seen` is the
/// completed run's `now`, see [`Store::sync_findings`]).
///
/// Memory is bounded by two pages (the one evaluated and the next one being read) and
/// the findings not yet synced (at most [`SYNC_FINDINGS`] plus one page's), whatever the
/// estate's size. Each page is evaluated inside
/// `tokio::task::spawn_blocking`, while the next page is read, so the runtime's workers
/// are never held by CPU-bound work. `now` must move forward between runs.
pub async fn run_compliance(
    store: &dyn Store,
    catalog: &Catalog,
    cloud: Option<&CloudId>,
    now: Timestamp,
    page_size: usize,
) -> Result<ComplianceReport, ComplianceError> {
    run_syncing(store, catalog, cloud, now, page_size, SYNC_FINDINGS).await
}

/// [`run_compliance`], syncing once `sync_findings` findings are pending.
pub(crate) async fn run_syncing(
    store: &dyn Store,
    catalog: &Catalog,
    cloud: Option<&CloudId>,
    now: Timestamp,
    page_size: usize,
    sync_findings: usize,
) -> Result<ComplianceReport, ComplianceError> {
    let started = Instant::now();
    let page_size = page_size.max(1);
    let mut report = ComplianceReport {
        per_insight: catalog.list().iter().map(|i| (i.id.0.clone(), 0)).collect(),
        ..ComplianceReport::default()
    };
    let types = catalog.resource_types();
    // the last uid of the previous page: the next page's findings range starts past it
    let mut after: Option<ResourceUid> = None;
    // findings of the pages evaluated since the last sync, whose range starts past `after`
    let mut pending: Vec<Finding> = Vec::new();
    // an empty type list would mean "every type" to the store: with no insight, scan nothing
    if !types.is_empty() {
        let query = ScanQuery {
            cloud: cloud.cloned(),
            types,
            facts: Some(catalog.fingerprint),
        };
        // two pages in turn: one evaluated while the other is read
        let mut page = store
            .scan_raw(&query, None, page_size, RawPage::default())
            .await?;
        let mut spare = RawPage::default();
        while let Some(last) = page.last_uid() {
            let shared = catalog.clone();
            let evaluation = tokio::task::spawn_blocking(move || {
                let outcome = shared.evaluate_page(&page, now);
                (page, outcome)
            });
            // evaluate this page and write the pending findings while the next page is read
            let range_start = after.as_ref();
            let work = async {
                let (page, outcome) = evaluation
                    .await
                    .map_err(|e| ComplianceError::Evaluation(e.to_string()))?;
                let mut outcome = outcome?;
                pending.append(&mut outcome.findings);
                if pending.len() < sync_findings {
                    return Ok::<_, ComplianceError>((page, outcome, None));
                }
                let findings = std::mem::take(&mut pending);
                let holding = findings.len() as u64;
                let (opened, resolved) = store
                    .sync_findings(cloud, range_start, Some(&last), findings, now)
                    .await?;
                Ok((page, outcome, Some((holding, opened, resolved))))
            };
            let next = store.scan_raw(&query, Some(&last), page_size, spare);
            let (work, next) = tokio::join!(work, next);
            let (done, outcome, synced) = work?;
            report.evaluated += outcome.evaluated;
            for (insight, n) in catalog.list().iter().zip(&outcome.counts) {
                if *n > 0 {
                    *report.per_insight.entry(insight.id.0.clone()).or_default() += n;
                }
            }
            if let Some((holding, opened, resolved)) = synced {
                report.open += holding;
                report.opened += opened;
                report.resolved += resolved;
                after = Some(last);
            }
            spare = done;
            page = next?;
        }
    }
    // the pages not yet synced and past the last page (findings of resources that are
    // gone); records the run
    report.open += pending.len() as u64;
    let (opened, resolved) = store
        .sync_findings(cloud, after.as_ref(), None, pending, now)
        .await?;
    report.opened += opened;
    report.resolved += resolved;
    for (id, n) in &report.per_insight {
        if *n > 0 {
            crate::metrics::count(
                "palisade_compliance_findings_total",
                &[("insight", id.as_str())],
                *n,
            );
        }
    }
    info!(
        cloud = cloud.map(CloudId::as_str).unwrap_or("all"),
        evaluated = report.evaluated,
        open = report.open,
        opened = report.opened,
        resolved = report.resolved,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compliance run done"
    );
    Ok(report)
}

#[cfg(test)]
mod tests;
