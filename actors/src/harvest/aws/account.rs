//! Account walker: the AWS account itself, with every trail that logs it.
//!
//! Owns: the identity the session learnt from STS GetCallerIdentity, DescribeTrails (shadow trails
//! included) in each of the cloud's configured regions, de-duplicated by ARN, and
//! GetTrailStatus once per distinct trail, in its home region.
//!
//! Must never: emit more than one `aws.account` resource per harvest.

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;

use palisade_proto::resource::GLOBAL_REGION;
use palisade_proto::ResourceType;

use super::cloudtrail::{describe_trails, is_logging};
use super::{text, AwsError, AwsSession, Emit, Found, DETAIL_CONCURRENCY};
use crate::harvest::HarvestError;

/// Where a trail without a home region is asked for its status.
const STS_REGION: &str = "us-east-1";

/// `aws.account`: one resource, id and name the account id.
pub(crate) async fn account(
    session: &AwsSession,
    regions: &[String],
    emit: &mut Emit<'_>,
) -> Result<(), HarvestError> {
    // The session already asked STS who it is: no second GetCallerIdentity.
    let account_id = session.account_id().to_string();
    let caller_arn = session.caller_arn().to_string();

    let mut trails: BTreeMap<String, Value> = BTreeMap::new();
    for region in regions {
        for trail in describe_trails(session, region, true).await? {
            if let Some(arn) = text(&trail, "TrailARN") {
                trails.entry(arn.to_string()).or_insert(trail);
            }
        }
    }
    let summaries: Vec<Value> = stream::iter(trails.into_values())
        .map(|trail| async move {
            let arn = text(&trail, "TrailARN").unwrap_or_default();
            let home = text(&trail, "HomeRegion").unwrap_or(STS_REGION);
            let logging = is_logging(session, home, arn).await?;
            Ok::<_, AwsError>(json!({
                "TrailARN": trail["TrailARN"],
                "Name": trail.get("Name").cloned().unwrap_or(Value::Null),
                "HomeRegion": trail.get("HomeRegion").cloned().unwrap_or(Value::Null),
                "IsMultiRegionTrail": trail.get("IsMultiRegionTrail").cloned().unwrap_or(Value::Null),
                "IsLogging": logging,
            }))
        })
        .buffered(DETAIL_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    let properties = json!({
        "AccountId": account_id,
        "Arn": caller_arn,
        "Trails": summaries,
    });
    let found = Found {
        id: account_id.clone(),
        name: account_id,
        tags: Default::default(),
        properties,
    };
    emit.send(GLOBAL_REGION, ResourceType::AwsAccount, found)
        .await
}
