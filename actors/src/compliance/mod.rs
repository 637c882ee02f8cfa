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
pub mod rules;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use palisade_proto::{
    CloudId, Finding, FindingState, Resource, ResourceType, ResourceUid, Timestamp,
};
use tracing::info;

use crate::store::{ScanQuery, Store, StoreError};

pub use palisade_proto::{InsightId, Severity};
pub use rules::{Insight, InsightSpec, RuleError};

/// Every insight this node evaluates, compiled, with an index by resource type. Cheap to
/// clone (shared).
#[derive(Clone, Debug)]
pub struct Catalog {
    insights: Arc<[Insight]>,
    /// For each resource type, the positions in `insights` of the insights naming it.
    by_type: Arc<BTreeMap<ResourceType, Vec<usize>>>,
}

impl Catalog {
    /// A catalog of compiled insights; ids must be unique.
    pub fn new(insights: Vec<Insight>) -> Result<Catalog, RuleError> {
        let mut by_type: BTreeMap<ResourceType, Vec<usize>> = BTreeMap::new();
        for (i, insight) in insights.iter().enumerate() {
            if insights[..i].iter().any(|o| o.id == insight.id) {
                return Err(RuleError::Duplicate(insight.id.0.clone()));
            }
            for t in &insight.resource_types {
                by_type.entry(*t).or_default().push(i);
            }
        }
        Ok(Catalog {
            insights: insights.into(),
            by_type: Arc::new(by_type),
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
        self.by_type.keys().copied().collect()
    }

    /// The insights that raise a finding on `r` at `now`.
    pub fn matching<'a>(
        &'a self,
        r: &'a Resource,
        now: Timestamp,
    ) -> impl Iterator<Item = &'a Insight> + 'a {
        self.positions(r, now).map(|i| &self.insights[i])
    }

    fn positions<'a>(
        &'a self,
        r: &'a Resource,
        now: Timestamp,
    ) -> impl Iterator<Item = usize> + 'a {
        self.by_type
            .get(&r.rtype)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .copied()
            .filter(move |&i| self.insights[i].matches(r, now))
    }

    /// Evaluate every insight over one page; the page is consumed (and freed) here.
    fn evaluate_page(&self, page: Vec<Resource>, now: Timestamp) -> PageOutcome {
        let mut out = PageOutcome {
            evaluated: page.len() as u64,
            counts: vec![0; self.insights.len()],
            findings: Vec::new(),
        };
        for r in &page {
            for i in self.positions(r, now) {
                out.counts[i] += 1;
                out.findings.push(Finding {
                    insight: self.insights[i].id.clone(),
                    resource_uid: r.uid.clone(),
                    resource: r.id.clone(),
                    resource_type: r.rtype,
                    region: r.region.clone(),
                    cloud: r.cloud.clone(),
                    state: FindingState::Open,
                    first_seen: now,
                    last_seen: now,
                    resolved_at: None,
                });
            }
        }
        out
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

/// Evaluate every insight over the live resources of one cloud (or all), streaming keyset
/// pages of `page_size` from `store.scan_resources` (only the types some insight names),
/// and reconcile the findings page by page with `store.sync_findings` over the page's uid
/// range `(previous page's last uid, this page's last uid]`, then once more over the rest
/// of the uid space (`through = None`), which resolves the findings of resources that are
/// gone and records the run as completed. A run where nothing changed writes nothing but
/// that record: findings that still hold are left untouched (their reported `last_seen`
/// is the completed run's `now`, see [`Store::sync_findings`]).
///
/// Memory is bounded by two pages (the one evaluated and the next one being read) and
/// their findings, whatever the estate's size. Each page is evaluated inside
/// `tokio::task::spawn_blocking`, while the next page is read, so the runtime's workers
/// are never held by CPU-bound work. `now` must move forward between runs.
pub async fn run_compliance(
    store: &dyn Store,
    catalog: &Catalog,
    cloud: Option<&CloudId>,
    now: Timestamp,
    page_size: usize,
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
    // an empty type list would mean "every type" to the store: with no insight, scan nothing
    if !types.is_empty() {
        let query = ScanQuery {
            cloud: cloud.cloned(),
            types,
        };
        let mut page = store.scan_resources(&query, None, page_size).await?;
        while let Some(last) = page.last().map(|r| r.uid.clone()) {
            let shared = catalog.clone();
            let evaluation = tokio::task::spawn_blocking(move || shared.evaluate_page(page, now));
            // evaluate this page and write its findings while the next page is read
            let range_start = after.as_ref();
            let work = async {
                let mut outcome = evaluation
                    .await
                    .map_err(|e| ComplianceError::Evaluation(e.to_string()))?;
                let findings = std::mem::take(&mut outcome.findings);
                let holding = findings.len() as u64;
                let (opened, resolved) = store
                    .sync_findings(cloud, range_start, Some(&last), findings, now)
                    .await?;
                Ok::<_, ComplianceError>((outcome, holding, opened, resolved))
            };
            let next = next_page(store, &query, &last, page_size);
            let (work, next) = tokio::join!(work, next);
            let (outcome, holding, opened, resolved) = work?;
            report.evaluated += outcome.evaluated;
            report.open += holding;
            report.opened += opened;
            report.resolved += resolved;
            for (insight, n) in catalog.list().iter().zip(&outcome.counts) {
                if *n > 0 {
                    *report.per_insight.entry(insight.id.0.clone()).or_default() += n;
                }
            }
            after = Some(last);
            page = next?;
        }
    }
    // past the last page: findings of resources that are gone; records the run
    let (opened, resolved) = store
        .sync_findings(cloud, after.as_ref(), None, Vec::new(), now)
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

async fn next_page(
    store: &dyn Store,
    query: &ScanQuery,
    after: &ResourceUid,
    limit: usize,
) -> Result<Vec<Resource>, StoreError> {
    store.scan_resources(query, Some(after), limit).await
}

#[cfg(test)]
mod tests;
