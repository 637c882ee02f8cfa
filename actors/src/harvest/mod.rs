//! Harvesting: walking a cloud's APIs and writing what they describe to the store.
//!
//! Owns: the harvest orchestration shared by every provider ([`run_harvest`]) and the
//! provider harvesters ([`aws`]). A harvest is cut into units: one per (regional type,
//! region) and one per global type. Up to `concurrency` units run at once and send their
//! resources down one bounded channel to a single writer, which stores them in
//! `upsert_resources` transactions of `batch_size`: memory stays bounded whatever the
//! estate's size. Only after every write is flushed does each unit that succeeded sweep its
//! (type, region) with `mark_deleted`.
//!
//! Must never: write a resource outside a batch transaction, or mark anything deleted for
//! a (type, region) whose harvest failed.
//!
//! Fault injection (for the supervisor's restart test): when the environment has
//! `STAGE=test` and `PALISADE_FAULT_HARVEST_PANIC=<region>`, the first unit of that region
//! to start panics (`fault injection: ...`), once per process.

pub mod actor;
pub mod aws;

use futures::stream::{self, StreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{info, warn};

use palisade_proto::{
    CloudAccount, HarvestScope, Provider, Resource, ResourceType, Scope, Timestamp,
};

use crate::metrics;
use crate::store::{DeletionSweep, SharedStore, StoreError};

/// Why a harvest (or one of its units) failed.
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("cloud api: {0}")]
    Api(String),
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("provider {0} cannot be harvested by this build")]
    UnsupportedProvider(Provider),
    #[error("harvest cancelled")]
    Cancelled,
    /// Some units failed; the others were stored. The summary names the failed units.
    #[error("harvest incomplete: {0}")]
    Failed(String),
}

/// What a harvest needs: where to write, how to reach the clouds, and how hard to push.
pub struct HarvestContext {
    pub store: SharedStore,
    pub aws: Arc<aws::AwsHarvester>,
    /// Resources per `upsert_resources` transaction.
    pub batch_size: usize,
    /// Units (type, region) harvested at once.
    pub concurrency: usize,
}

/// What one harvest did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HarvestReport {
    /// Resources seen (and stored).
    pub resources: u64,
    /// Resources marked deleted because the harvest no longer saw them.
    pub deleted: u64,
    /// API calls made, retries included.
    pub api_calls: u64,
    /// `type/region: error` of each unit that failed.
    pub failed_units: Vec<String>,
    /// Resources seen per type name.
    pub per_type: BTreeMap<String, u64>,
}

/// One piece of a harvest: a type in a region, or a global type (`region` none).
#[derive(Clone, Debug)]
struct Unit {
    rtype: ResourceType,
    region: Option<String>,
}

impl Unit {
    fn label(&self) -> String {
        format!(
            "{}/{}",
            self.rtype,
            self.region
                .as_deref()
                .unwrap_or(palisade_proto::resource::GLOBAL_REGION)
        )
    }
}

/// Harvest the scope (empty regions = cloud.regions, empty types = every type of the
/// provider): one unit per (regional type, region) and one per global type; up to
/// `concurrency` units at once; one writer batches resources into `upsert_resources`
/// transactions of `batch_size` through a bounded channel; after all writes are flushed, a
/// `mark_deleted` sweep for each unit that succeeded (region none for global types: S3
/// buckets carry their own region, so they are swept account-wide). A unit that fails
/// leaves its (type, region) as it was, and the harvest returns [`HarvestError::Failed`]
/// naming the failed units once the rest is stored. `progress` is called after each unit
/// with (units done, units total, resources so far).
pub async fn run_harvest(
    ctx: &HarvestContext,
    cloud: &CloudAccount,
    scope: &HarvestScope,
    at: Timestamp,
    progress: &(dyn Fn(usize, usize, u64) + Send + Sync),
) -> Result<HarvestReport, HarvestError> {
    if cloud.provider != Provider::Aws {
        return Err(HarvestError::UnsupportedProvider(cloud.provider));
    }
    let units = plan(cloud, scope);
    let total = units.len();
    let session = ctx.aws.session(cloud).await?;
    info!(cloud = %cloud.id, account = session.account_id(), units = total, "harvest started");

    let batch_size = ctx.batch_size.max(1);
    let (tx, rx) = mpsc::channel::<Resource>(batch_size * 2);
    let writer = write_batches(ctx.store.clone(), rx, batch_size);
    let producer = async {
        let tx = tx;
        let mut outcomes: Vec<(Unit, Result<u64, HarvestError>)> = Vec::with_capacity(total);
        let mut seen = 0u64;
        let mut running = stream::iter(units)
            .map(|unit| {
                let (session, tx) = (&session, &tx);
                async move {
                    let region = unit
                        .region
                        .as_deref()
                        .unwrap_or(palisade_proto::resource::GLOBAL_REGION);
                    fault_injection(region);
                    let result = ctx
                        .aws
                        .harvest_type(session, cloud, region, unit.rtype, at, tx)
                        .await;
                    (unit, result)
                }
            })
            .buffer_unordered(ctx.concurrency.max(1));
        while let Some((unit, result)) = running.next().await {
            let region = unit
                .region
                .as_deref()
                .unwrap_or(palisade_proto::resource::GLOBAL_REGION);
            let rtype = unit.rtype.as_str();
            match &result {
                Ok(n) => {
                    seen += n;
                    metrics::count("palisade_harvest_resources_total", &[("type", rtype)], *n);
                    info!(cloud = %cloud.id, region, rtype, resources = n, "harvest unit done");
                }
                Err(e) => {
                    metrics::inc("palisade_harvest_failures_total", &[("type", rtype)]);
                    warn!(cloud = %cloud.id, region, rtype, error = %e, "harvest unit failed");
                }
            }
            outcomes.push((unit, result));
            progress(outcomes.len(), total, seen);
        }
        outcomes
    };
    let (outcomes, written) = tokio::join!(producer, writer);
    written?;

    let mut report = HarvestReport {
        api_calls: session.api_calls(),
        ..HarvestReport::default()
    };
    for (unit, result) in outcomes {
        match result {
            Ok(n) => {
                report.resources += n;
                *report
                    .per_type
                    .entry(unit.rtype.as_str().to_string())
                    .or_insert(0) += n;
                let sweep = DeletionSweep {
                    cloud: cloud.id.clone(),
                    rtype: unit.rtype,
                    region: unit.region.clone(),
                    seen_before: at,
                    now: at,
                };
                report.deleted += ctx.store.mark_deleted(&sweep).await?;
            }
            Err(e) => report.failed_units.push(format!("{}: {e}", unit.label())),
        }
    }
    report.failed_units.sort();
    info!(
        cloud = %cloud.id,
        resources = report.resources,
        deleted = report.deleted,
        api_calls = report.api_calls,
        failed = report.failed_units.len(),
        "harvest done"
    );
    if report.failed_units.is_empty() {
        Ok(report)
    } else {
        Err(HarvestError::Failed(format!(
            "{} of {} units failed: {}",
            report.failed_units.len(),
            total,
            report.failed_units.join("; ")
        )))
    }
}

/// The units of a scope: each regional type in each region, each global type once.
fn plan(cloud: &CloudAccount, scope: &HarvestScope) -> Vec<Unit> {
    let regions = if scope.regions.is_empty() {
        &cloud.regions
    } else {
        &scope.regions
    };
    let types: Vec<ResourceType> = if scope.types.is_empty() {
        ResourceType::of_provider(cloud.provider).collect()
    } else {
        scope.types.clone()
    };
    let mut units = Vec::new();
    for rtype in types {
        match rtype.scope() {
            Scope::Global => units.push(Unit {
                rtype,
                region: None,
            }),
            Scope::Regional => units.extend(regions.iter().map(|r| Unit {
                rtype,
                region: Some(r.clone()),
            })),
        }
    }
    units
}

/// Store everything that arrives, `batch_size` resources per transaction.
async fn write_batches(
    store: SharedStore,
    mut rx: mpsc::Receiver<Resource>,
    batch_size: usize,
) -> Result<(), StoreError> {
    let mut batch = Vec::with_capacity(batch_size);
    while let Some(resource) = rx.recv().await {
        batch.push(resource);
        if batch.len() >= batch_size {
            store
                .upsert_resources(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(batch_size),
                ))
                .await?;
        }
    }
    if !batch.is_empty() {
        store.upsert_resources(batch).await?;
    }
    Ok(())
}

/// The test hook documented in the module header.
fn fault_injection(region: &str) {
    static FIRED: AtomicBool = AtomicBool::new(false);
    inject_fault(|name| std::env::var(name).ok(), region, &FIRED);
}

/// Panic when `STAGE` is `test` and `PALISADE_FAULT_HARVEST_PANIC` names `region`, unless
/// `fired` says it already happened.
fn inject_fault(var: impl Fn(&str) -> Option<String>, region: &str, fired: &AtomicBool) {
    let armed = var("STAGE").as_deref() == Some("test")
        && var("PALISADE_FAULT_HARVEST_PANIC").as_deref() == Some(region);
    if armed && !fired.swap(true, Ordering::SeqCst) {
        panic!("fault injection: harvest of region {region} panics");
    }
}

#[cfg(test)]
mod tests {
    use super::aws::transport::testsupport::{test_credentials, MotoServer};
    use super::aws::AwsHarvester;
    use super::*;
    use crate::store::ResourceQuery;
    use palisade_proto::CloudId;
    use serde_json::Value;
    use std::sync::atomic::AtomicUsize;

    const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

    /// Seed the estate with `integration/estate.py` and return what it printed.
    fn seed(moto: &MotoServer, extra: &[&str]) -> Value {
        let python = std::env::var("PALISADE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../integration/estate.py");
        let out = std::process::Command::new(&python)
            .arg(script)
            .args([
                "--endpoint",
                &moto.endpoint(),
                "--regions",
                &REGIONS.join(","),
            ])
            .args(extra)
            .output()
            .expect("run estate.py");
        assert!(
            out.status.success(),
            "estate.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("estate.py prints one JSON object")
    }

    fn cloud() -> CloudAccount {
        CloudAccount {
            id: CloudId("cloud-1".into()),
            provider: Provider::Aws,
            name: "moto".into(),
            regions: REGIONS.iter().map(|r| r.to_string()).collect(),
            credentials: test_credentials(),
            created_at: chrono::Utc::now(),
        }
    }

    fn scope(types: Vec<ResourceType>) -> HarvestScope {
        HarvestScope {
            cloud: CloudId("cloud-1".into()),
            regions: Vec::new(),
            types,
        }
    }

    async fn context(moto: &MotoServer) -> HarvestContext {
        HarvestContext {
            store: crate::store::open("sqlite::memory:").await.expect("store"),
            aws: Arc::new(AwsHarvester::with_transport(moto.transport())),
            batch_size: 40,
            concurrency: 4,
        }
    }

    async fn stored(
        ctx: &HarvestContext,
        rtype: ResourceType,
        region: Option<&str>,
    ) -> Vec<Resource> {
        let query = ResourceQuery {
            rtype: Some(rtype),
            region: region.map(str::to_string),
            limit: 10_000,
            ..ResourceQuery::default()
        };
        ctx.store.list_resources(&query).await.expect("list").items
    }

    fn named<'a>(resources: &'a [Resource], name: &str) -> &'a Resource {
        resources
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no resource named {name}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn harvests_the_estate_exactly_and_sweeps_what_disappears() {
        let moto = MotoServer::start();
        let expected = seed(&moto, &[]);
        let ctx = context(&moto).await;
        let cloud = cloud();
        // the store keeps milliseconds
        let at = chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis())
            .expect("now in range");
        let calls = AtomicUsize::new(0);
        let progress = |done: usize, total: usize, _seen: u64| {
            calls.fetch_add(1, Ordering::SeqCst);
            assert!(done <= total);
        };

        let report = run_harvest(&ctx, &cloud, &scope(Vec::new()), at, &progress)
            .await
            .expect("harvest");

        // exact counts per type, in the report and in the store
        let want: BTreeMap<String, u64> =
            serde_json::from_value(expected["types"].clone()).expect("type counts");
        assert_eq!(report.per_type, want);
        let in_store: BTreeMap<String, u64> = ctx
            .store
            .count_resources_by_type(Some(&cloud.id))
            .await
            .expect("count")
            .into_iter()
            .map(|(t, n)| (t.as_str().to_string(), n))
            .collect();
        assert_eq!(in_store, want);
        assert_eq!(report.resources, want.values().sum::<u64>());
        assert_eq!(report.deleted, 0);
        // 7 regional types x 2 regions + 3 global types
        assert_eq!(calls.load(Ordering::SeqCst), 7 * 2 + 3);

        // the second DescribeDBInstances page (MaxRecords 100) was followed
        let rds = stored(&ctx, ResourceType::AwsRdsDbInstance, Some("us-east-1")).await;
        assert_eq!(rds.len(), 101, "every RDS page of us-east-1");

        // a minimal walk, call for call (see the comment for the sum)
        // session 1 + EC2 4x2 + RDS 2+1 + KMS 2x(ListAliases 1 + ListKeys 1 + DescribeKey 4
        // + rotation 3) + CloudTrail 2x(1 + 1) + S3 1 + 6x6 + IAM 1 + 5x3
        // + account: nothing more (the identity is the session's; the trail list and
        // status are the CloudTrail walker's shared answers)
        assert_eq!(report.api_calls, 1 + 8 + 3 + 18 + 4 + 37 + 16);

        check_shapes(&ctx).await;

        // delete one security group in moto: the next harvest marks exactly it deleted
        let groups = stored(&ctx, ResourceType::AwsEc2SecurityGroup, Some("eu-west-1")).await;
        let victim = named(&groups, "ssh-world").id.clone();
        let session = ctx.aws.session(&cloud).await.expect("session");
        session
            .query(
                "ec2",
                "eu-west-1",
                "DeleteSecurityGroup",
                "2016-11-15",
                &[("GroupId".to_string(), victim.clone())],
            )
            .await
            .expect("delete security group");
        let later = at + chrono::Duration::seconds(60);
        let again = run_harvest(&ctx, &cloud, &scope(Vec::new()), later, &|_, _, _| {})
            .await
            .expect("second harvest");
        assert_eq!(again.deleted, 1);
        let all = ctx
            .store
            .list_resources(&ResourceQuery {
                cloud: Some(cloud.id.clone()),
                include_deleted: true,
                limit: 10_000,
                ..ResourceQuery::default()
            })
            .await
            .expect("list all");
        let deleted: Vec<&Resource> = all
            .items
            .iter()
            .filter(|r| r.deleted_at.is_some())
            .collect();
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].id, victim);
        assert_eq!(deleted[0].deleted_at, Some(later));
        let first_seen_kept = all
            .items
            .iter()
            .all(|r| r.first_seen == at && (r.deleted_at.is_some() || r.last_seen == later));
        assert!(first_seen_kept, "first_seen kept and last_seen refreshed");
    }

    /// Spot checks of the shapes.md contract on the harvested estate.
    async fn check_shapes(ctx: &HarvestContext) {
        let groups = stored(ctx, ResourceType::AwsEc2SecurityGroup, Some("us-east-1")).await;
        let ssh = &named(&groups, "ssh-world").properties;
        assert_eq!(ssh["ipPermissions"][0]["ipProtocol"], "tcp");
        assert_eq!(ssh["ipPermissions"][0]["fromPort"], "22");
        assert_eq!(
            ssh["ipPermissions"][0]["ipRanges"],
            serde_json::json!([{"cidrIp": "0.0.0.0/0"}])
        );
        assert_eq!(ssh["ipPermissions"][0]["ipv6Ranges"], serde_json::json!([]));
        assert!(named(&groups, "no-ingress").properties["ipPermissions"]
            .as_array()
            .is_some_and(Vec::is_empty));

        let instances = stored(ctx, ResourceType::AwsEc2Instance, Some("us-east-1")).await;
        let owned = named(&instances, "owned");
        assert_eq!(owned.tags.get("Owner").map(String::as_str), Some("alice"));
        assert!(owned.properties["tagSet"].is_array() && owned.properties["groupSet"].is_array());
        assert_eq!(
            named(&instances, "terminated-unowned").properties["instanceState"]["name"],
            "terminated"
        );

        let buckets = stored(ctx, ResourceType::AwsS3Bucket, None).await;
        assert_eq!(
            named(&buckets, "palisade-private-eu-west-1").region,
            "eu-west-1"
        );
        assert_eq!(
            named(&buckets, "palisade-private-eu-west-1").properties["Region"],
            "eu-west-1"
        );
        let public = &named(&buckets, "palisade-public-read").properties;
        assert_eq!(public["Encryption"], Value::Null);
        let grants = public["Acl"]["Grants"].as_array().expect("grants");
        assert!(grants.iter().any(|g| g["Grantee"]["Type"] == "Group"
            && g["Grantee"]["URI"] == "http://acs.amazonaws.com/groups/global/AllUsers"));
        let guarded = &named(&buckets, "palisade-private-encrypted").properties;
        assert_eq!(
            guarded["Encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
            "AES256"
        );
        assert_eq!(guarded["PublicAccessBlock"]["BlockPublicAcls"], "true");
        assert_eq!(guarded["Versioning"]["Status"], "Enabled");
        assert_eq!(
            named(&buckets, "palisade-private-plain").properties["PublicAccessBlock"],
            Value::Null
        );

        let users = stored(ctx, ResourceType::AwsIamUser, Some("global")).await;
        let bob = &named(&users, "bob").properties;
        assert_eq!(bob["MFADevices"], serde_json::json!([]));
        assert!(bob["LoginProfile"].is_object());
        assert_eq!(bob["AccessKeys"].as_array().map(Vec::len), Some(2));
        let alice = &named(&users, "alice").properties;
        assert_eq!(alice["MFADevices"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            named(&users, "carol").properties["LoginProfile"],
            Value::Null
        );

        let keys = stored(ctx, ResourceType::AwsKmsKey, Some("eu-west-1")).await;
        let rotated = named(&keys, "alias/palisade-rotated");
        assert_eq!(rotated.properties["KeyRotationEnabled"], Value::Bool(true));
        assert_eq!(
            rotated.properties["Aliases"],
            serde_json::json!(["alias/palisade-rotated"])
        );
        assert_eq!(
            named(&keys, "alias/palisade-unrotated").properties["KeyRotationEnabled"],
            Value::Bool(false)
        );
        assert_eq!(
            named(&keys, "alias/palisade-disabled").properties["KeyRotationEnabled"],
            Value::Null
        );

        let trails = stored(ctx, ResourceType::AwsCloudtrailTrail, None).await;
        let multi = named(&trails, "palisade-multi");
        assert_eq!(
            (multi.region.as_str(), &multi.properties["IsLogging"]),
            ("us-east-1", &Value::Bool(true))
        );
        assert_eq!(
            named(&trails, "palisade-single-eu-west-1").region,
            "eu-west-1"
        );

        let account = stored(ctx, ResourceType::AwsAccount, None).await;
        assert_eq!(account.len(), 1);
        assert_eq!(account[0].id, "123456789012");
        assert_eq!(
            account[0].properties["Trails"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_unit_keeps_its_resources_and_fails_the_job() {
        let moto = MotoServer::start();
        let ctx = context(&moto).await;
        let mut cloud = cloud();
        let at = chrono::Utc::now();
        run_harvest(
            &ctx,
            &cloud,
            &scope(vec![ResourceType::AwsEc2Vpc]),
            at,
            &|_, _, _| {},
        )
        .await
        .expect("first harvest");
        let before = stored(&ctx, ResourceType::AwsEc2Vpc, None).await;
        assert_eq!(before.len(), 2, "one default VPC per region");

        // a region moto refuses fails its unit; the other region is swept as usual
        cloud.regions = vec!["us-east-1".into(), "no-such-region-1".into()];
        let later = at + chrono::Duration::seconds(1);
        let err = run_harvest(
            &ctx,
            &cloud,
            &scope(vec![ResourceType::AwsEc2Vpc]),
            later,
            &|_, _, _| {},
        )
        .await
        .expect_err("one unit fails");
        assert!(
            matches!(&err, HarvestError::Failed(m) if m.contains("aws.ec2.vpc/no-such-region-1")),
            "{err}"
        );
        let after = stored(&ctx, ResourceType::AwsEc2Vpc, None).await;
        assert_eq!(after.len(), 2, "nothing marked deleted");
    }

    #[test]
    fn plan_cuts_regional_types_per_region_and_global_types_once() {
        let cloud = cloud();
        let units = plan(&cloud, &scope(Vec::new()));
        let regional = ResourceType::ALL
            .iter()
            .filter(|t| t.scope() == Scope::Regional)
            .count();
        let global = ResourceType::ALL.len() - regional;
        assert_eq!(units.len(), regional * 2 + global);
        let narrowed = HarvestScope {
            cloud: cloud.id.clone(),
            regions: vec!["eu-west-1".into()],
            types: vec![ResourceType::AwsS3Bucket, ResourceType::AwsEc2Vpc],
        };
        let labels: Vec<String> = plan(&cloud, &narrowed).iter().map(Unit::label).collect();
        assert_eq!(labels, ["aws.s3.bucket/global", "aws.ec2.vpc/eu-west-1"]);
    }

    #[test]
    fn fault_injection_fires_once_and_only_in_the_test_stage() {
        let vars = |stage: &'static str| {
            move |name: &str| match name {
                "STAGE" => Some(stage.to_string()),
                "PALISADE_FAULT_HARVEST_PANIC" => Some("eu-west-1".to_string()),
                _ => None,
            }
        };
        let fired = AtomicBool::new(false);
        inject_fault(vars("live"), "eu-west-1", &fired);
        inject_fault(vars("test"), "us-east-1", &fired);
        assert!(!fired.load(Ordering::SeqCst));
        let panicked = std::panic::catch_unwind(|| inject_fault(vars("test"), "eu-west-1", &fired));
        let message = panicked.expect_err("armed region panics");
        let text = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(text.starts_with("fault injection: "), "{text}");
        inject_fault(vars("test"), "eu-west-1", &fired);
    }

    #[tokio::test]
    async fn other_providers_are_refused() {
        let mut cloud = cloud();
        cloud.provider = Provider::Azure;
        let refused = async {
            let store = crate::store::open("sqlite::memory:").await.expect("store");
            let transport = super::aws::transport::testsupport::transport_to(
                "http://127.0.0.1:9",
                crate::proxy::ProxyConfig::none(),
                super::aws::transport::testsupport::test_settings(),
            );
            let ctx = HarvestContext {
                store,
                aws: Arc::new(AwsHarvester::with_transport(transport)),
                batch_size: 10,
                concurrency: 1,
            };
            run_harvest(
                &ctx,
                &cloud,
                &scope(Vec::new()),
                chrono::Utc::now(),
                &|_, _, _| {},
            )
            .await
        }
        .await;
        assert!(matches!(
            refused,
            Err(HarvestError::UnsupportedProvider(Provider::Azure))
        ));
    }
}
