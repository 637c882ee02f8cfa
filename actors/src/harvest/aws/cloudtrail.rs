//! CloudTrail walker: the trails homed in one region, with their logging status.
//!
//! Owns: DescribeTrails (one call per region, shadow trails included; the API does not page
//! it) and GetTrailStatus per trail, [`DETAIL_CONCURRENCY`] at a time. Both are shared
//! session calls, so the account walker ([`super::account`]) reuses the same answers
//! within one harvest instead of asking again.
//!
//! Must never: store a trail outside its `HomeRegion`: a multi-region trail shows up in
//! every region's DescribeTrails, but it is one trail, kept by its home region's harvest.

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use palisade_proto::ResourceType;

use super::{into_list, take, text, AwsError, AwsSession, Emit, Found, DETAIL_CONCURRENCY};
use crate::harvest::HarvestError;

const TARGET: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101";

/// DescribeTrails in `region`; with `shadows`, also the trails of other regions that
/// apply to it (multi-region trails).
pub(crate) async fn describe_trails(
    session: &AwsSession,
    region: &str,
    shadows: bool,
) -> Result<Vec<Value>, AwsError> {
    let body = json!({ "includeShadowTrails": shadows });
    let mut answer = session
        .json_shared(
            "cloudtrail",
            region,
            &format!("{TARGET}.DescribeTrails"),
            &body,
        )
        .await?;
    Ok(into_list(take(&mut answer, "trailList")))
}

/// Whether a trail is logging (GetTrailStatus in its home region).
pub(crate) async fn is_logging(
    session: &AwsSession,
    home: &str,
    arn: &str,
) -> Result<Value, AwsError> {
    let answer = session
        .json_shared(
            "cloudtrail",
            home,
            &format!("{TARGET}.GetTrailStatus"),
            &json!({ "Name": arn }),
        )
        .await?;
    Ok(answer.get("IsLogging").cloned().unwrap_or(Value::Null))
}

/// `aws.cloudtrail.trail`: the trails whose home region is `region`.
pub(crate) async fn trails(
    session: &AwsSession,
    region: &str,
    emit: &mut Emit<'_>,
) -> Result<(), HarvestError> {
    // With shadow trails, as the account walker asks, so both share one answer.
    let homed: Vec<Value> = describe_trails(session, region, true)
        .await?
        .into_iter()
        .filter(|t| text(t, "HomeRegion") == Some(region) && text(t, "TrailARN").is_some())
        .collect();
    let mut details = stream::iter(homed)
        .map(|mut trail| async move {
            let arn = text(&trail, "TrailARN").unwrap_or_default().to_string();
            trail["IsLogging"] = is_logging(session, region, &arn).await?;
            Ok::<_, AwsError>((arn, trail))
        })
        .buffer_unordered(DETAIL_CONCURRENCY);
    while let Some(next) = details.next().await {
        let (arn, trail) = next?;
        let name = text(&trail, "Name").unwrap_or(&arn).to_string();
        let found = Found {
            id: arn,
            name,
            tags: Default::default(),
            properties: trail,
        };
        emit.send(region, ResourceType::AwsCloudtrailTrail, found)
            .await?;
    }
    Ok(())
}
