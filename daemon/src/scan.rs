//! `palisade scan`: harvest one account once into an in-memory store, evaluate the
//! built-in insights, report, and exit 0 (no open findings), 3 (open findings) or 1 (error).

use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use palisade_actors::compliance::{run_compliance, Catalog};
use palisade_actors::crypto::CredentialsCipher;
use palisade_actors::harvest::aws::AwsHarvester;
use palisade_actors::harvest::{run_harvest, HarvestContext, HarvestError};
use palisade_actors::proxy::ProxyConfig;
use palisade_actors::store::{FindingQuery, ResourceQuery, SharedStore};
use palisade_proto::{
    CloudAccount, CloudId, Credentials, Finding, FindingState, HarvestScope, Provider, Resource,
};

use crate::cli::{ScanArgs, ScanFormat};
use crate::conf::Loaded;

/// Exit code when the scan found open findings (as Prowler does).
const EXIT_FINDINGS: u8 = 3;
const PAGE: u32 = 1000;

pub fn scan(loaded: Loaded, args: ScanArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scan_async(loaded, args)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "scan failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn scan_async(loaded: Loaded, args: ScanArgs) -> anyhow::Result<ExitCode> {
    let settings = loaded.settings;
    // nothing outlives the scan: its credentials are sealed under a key of its own
    let store = palisade_actors::store::open_with(
        "sqlite::memory:",
        Arc::new(CredentialsCipher::ephemeral()),
    )
    .await?;
    let catalog = Catalog::builtin(&settings.compliance)?;
    store.keep_facts(catalog.facts());
    let proxy = ProxyConfig::from_env()?;
    let aws = AwsHarvester::new(&settings.aws, proxy)?;
    let cloud = CloudAccount {
        id: CloudId("scan".into()),
        provider: Provider::Aws,
        name: "scan".into(),
        regions: args.regions.clone(),
        credentials: Credentials::Default,
        created_at: chrono::Utc::now(),
    };
    store.put_cloud(&cloud).await?;
    let ctx = HarvestContext {
        store: store.clone(),
        aws: Arc::new(aws),
        batch_size: settings.store.batch_size,
        concurrency: settings.aws.concurrency,
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} harvest [{bar:30}] {pos}/{len} units, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = {
        let bar = bar.clone();
        move |done: usize, total: usize, resources: u64| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(format!("{resources} resources"));
            tracing::info!(done, total, resources, "harvest progress");
        }
    };
    let scope = HarvestScope {
        cloud: cloud.id.clone(),
        regions: vec![],
        types: vec![],
    };
    let at = chrono::Utc::now();
    let harvest = run_harvest(&ctx, &cloud, &scope, at, &progress).await;
    bar.finish_and_clear();
    let harvest_error = match harvest {
        Ok(report) => {
            tracing::info!(
                resources = report.resources,
                api_calls = report.api_calls,
                "harvest done"
            );
            None
        }
        // Some units failed: report what was harvested, then exit 1.
        Err(HarvestError::Failed(summary)) => Some(summary),
        Err(e) => return Err(e.into()),
    };
    let report = run_compliance(
        store.as_ref(),
        &catalog,
        None,
        chrono::Utc::now(),
        settings.compliance.page_size,
    )
    .await?;
    tracing::info!(
        evaluated = report.evaluated,
        open = report.open,
        "compliance done"
    );

    let resources = all_resources(&store).await?;
    let findings = open_findings(&store).await?;
    let severity: BTreeMap<&str, &str> = catalog
        .list()
        .iter()
        .map(|i| (i.id.as_str(), i.severity.as_str()))
        .collect();
    let text = match args.format {
        ScanFormat::Json => render_json(&resources, &findings, &severity)?,
        ScanFormat::Table => render_table(&resources, &findings, &severity),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    if let Some(summary) = harvest_error {
        eprintln!("error: harvest incomplete: {summary}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FINDINGS)
    })
}

async fn all_resources(store: &SharedStore) -> anyhow::Result<Vec<Resource>> {
    let mut out = Vec::new();
    let mut q = ResourceQuery {
        limit: PAGE,
        ..Default::default()
    };
    loop {
        let page = store.list_resources(&q).await?;
        let n = page.items.len();
        out.extend(page.items);
        if n < PAGE as usize {
            return Ok(out);
        }
        q.offset += n as u64;
    }
}

async fn open_findings(store: &SharedStore) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    let mut q = FindingQuery {
        state: Some(FindingState::Open),
        limit: PAGE,
        ..Default::default()
    };
    loop {
        let page = store.list_findings(&q).await?;
        let n = page.items.len();
        out.extend(page.items);
        if n < PAGE as usize {
            return Ok(out);
        }
        q.offset += n as u64;
    }
}

fn render_json(
    resources: &[Resource],
    findings: &[Finding],
    severity: &BTreeMap<&str, &str>,
) -> anyhow::Result<String> {
    let findings: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(f)?;
            if let Some(obj) = v.as_object_mut() {
                let sev = severity
                    .get(f.insight.as_str())
                    .copied()
                    .unwrap_or("medium");
                obj.insert("severity".into(), sev.into());
            }
            Ok(v)
        })
        .collect::<Result<_, serde_json::Error>>()?;
    let doc = serde_json::json!({ "resources": resources, "findings": findings });
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    Ok(text)
}

fn render_table(
    resources: &[Resource],
    findings: &[Finding],
    severity: &BTreeMap<&str, &str>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut per_type: BTreeMap<&str, u64> = BTreeMap::new();
    for r in resources {
        *per_type.entry(r.rtype.as_str()).or_default() += 1;
    }
    let _ = writeln!(out, "RESOURCES ({})", resources.len());
    for (t, n) in &per_type {
        let _ = writeln!(out, "  {t:<26} {n:>7}");
    }
    let _ = writeln!(out, "\nOPEN FINDINGS ({})", findings.len());
    if !findings.is_empty() {
        let _ = writeln!(
            out,
            "  {:<9} {:<36} {:<24} {:<15} RESOURCE",
            "SEVERITY", "INSIGHT", "TYPE", "REGION"
        );
    }
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.insight, &a.region, &a.resource).cmp(&(&b.insight, &b.region, &b.resource))
    });
    for f in sorted {
        let sev = severity
            .get(f.insight.as_str())
            .copied()
            .unwrap_or("medium");
        let _ = writeln!(
            out,
            "  {:<9} {:<36} {:<24} {:<15} {}",
            sev,
            f.insight.as_str(),
            f.resource_type.as_str(),
            f.region,
            f.resource
        );
    }
    out
}
