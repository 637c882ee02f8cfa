//! S3 walker: the account's buckets with their ACL, default encryption, public access
//! block, policy status and versioning.
//!
//! Owns: ListBuckets (following `ContinuationToken` when the answer carries one) and six
//! detail calls per bucket: GetBucketLocation (signed for us-east-1, which answers for any
//! bucket), then GetBucketAcl, GetBucketEncryption, GetPublicAccessBlock,
//! GetBucketPolicyStatus and GetBucketVersioning, signed for the bucket's own region;
//! [`DETAIL_CONCURRENCY`] buckets at a time.
//!
//! Must never: fail a bucket because a configuration is absent: "not found" answers are
//! `null`; or store a bucket under any region but its own.

use futures::stream::{self, StreamExt};
use serde_json::{json, Map, Value};

use palisade_proto::ResourceType;

use super::{
    into_list, is_code, take, text, AwsError, AwsSession, Emit, Found, DETAIL_CONCURRENCY,
};
use crate::harvest::HarvestError;

/// Where ListBuckets and GetBucketLocation are signed.
const HOME_REGION: &str = "us-east-1";

/// `aws.s3.bucket`: every bucket of the account, each in its own region.
pub(crate) async fn buckets(session: &AwsSession, emit: &mut Emit<'_>) -> Result<(), HarvestError> {
    let mut token: Option<String> = None;
    loop {
        let query: Vec<(&str, &str)> = match &token {
            Some(t) => vec![("continuation-token", t.as_str())],
            None => Vec::new(),
        };
        let mut page = session.rest_get("s3", HOME_REGION, "/", &query).await?;
        let mut wrapper = take(&mut page, "Buckets");
        let buckets = into_list(take(&mut wrapper, "Bucket"));
        let mut details = stream::iter(buckets)
            .map(|bucket| bucket_details(session, bucket))
            .buffer_unordered(DETAIL_CONCURRENCY);
        while let Some(next) = details.next().await {
            if let Some((region, found)) = next? {
                emit.send(&region, ResourceType::AwsS3Bucket, found).await?;
            }
        }
        token = text(&page, "ContinuationToken").map(str::to_string);
        if token.is_none() {
            return Ok(());
        }
    }
}

/// One bucket's region and resource; none when the bucket vanished meanwhile.
async fn bucket_details(
    session: &AwsSession,
    bucket: Value,
) -> Result<Option<(String, Found)>, HarvestError> {
    let Some(name) = text(&bucket, "Name").map(str::to_string) else {
        return Ok(None);
    };
    let path = format!("/{name}");
    let location = match session
        .rest_get("s3", HOME_REGION, &path, &[("location", "")])
        .await
    {
        Ok(answer) => answer,
        Err(e) if is_code(&e, &["NoSuchBucket"]) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let region = bucket_region(&location);
    let get = |sub: &'static str| subresource(session, &region, &path, sub);

    let acl = get("acl").await?;
    let encryption = optional(
        get("encryption").await,
        &[
            "ServerSideEncryptionConfigurationNotFoundError",
            "NoSuchEncryptionConfiguration",
        ],
    )?;
    let access_block = optional(
        get("publicAccessBlock").await,
        &["NoSuchPublicAccessBlockConfiguration"],
    )?;
    let policy_status = optional(get("policyStatus").await, &["NoSuchBucketPolicy"])?;
    let versioning = get("versioning").await?;

    let properties = json!({
        "Name": name,
        "CreationDate": bucket.get("CreationDate").cloned().unwrap_or(Value::Null),
        "Region": region,
        "Acl": acl_shape(acl),
        "Encryption": encryption.map(encryption_shape).unwrap_or(Value::Null),
        "PublicAccessBlock": access_block.map(access_block_shape).unwrap_or(Value::Null),
        "PolicyStatus": policy_status.map(policy_status_shape).unwrap_or(Value::Null),
        "Versioning": versioning_shape(versioning),
    });
    let found = Found {
        id: name.clone(),
        name,
        tags: Default::default(),
        properties,
    };
    Ok(Some((region, found)))
}

/// `GET /bucket?sub` signed for `region`.
async fn subresource(
    session: &AwsSession,
    region: &str,
    path: &str,
    sub: &str,
) -> Result<Value, AwsError> {
    session.rest_get("s3", region, path, &[(sub, "")]).await
}

/// An answer, or none when the API said the configuration is absent with one of `codes`.
fn optional(answer: Result<Value, AwsError>, codes: &[&str]) -> Result<Option<Value>, AwsError> {
    match answer {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_code(&e, codes) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The region of a GetBucketLocation answer: empty means us-east-1, `EU` eu-west-1.
fn bucket_region(location: &Value) -> String {
    let constraint = match location {
        Value::String(s) => s.as_str(),
        other => text(other, "_text")
            .or_else(|| text(other, "LocationConstraint"))
            .unwrap_or(""),
    };
    match constraint.trim() {
        "" => HOME_REGION.to_string(),
        "EU" => "eu-west-1".to_string(),
        region => region.to_string(),
    }
}

fn acl_shape(mut acl: Value) -> Value {
    let owner = take(&mut acl, "Owner");
    let mut list = take(&mut acl, "AccessControlList");
    let grants: Vec<Value> = into_list(take(&mut list, "Grant"))
        .into_iter()
        .map(|mut grant| {
            let mut grantee = take(&mut grant, "Grantee");
            let mut shaped = Map::new();
            let kind = match take(&mut grantee, "type") {
                Value::Null => take(&mut grantee, "Type"),
                kind => kind,
            };
            shaped.insert("Type".into(), kind);
            for key in ["ID", "URI", "DisplayName", "EmailAddress"] {
                if let Some(v) = grantee.get_mut(key).map(Value::take) {
                    shaped.insert(key.into(), v);
                }
            }
            json!({ "Grantee": shaped, "Permission": take(&mut grant, "Permission") })
        })
        .collect();
    let owner = match owner {
        Value::Object(_) => json!({
            "ID": owner.get("ID").cloned().unwrap_or(Value::Null),
            "DisplayName": owner.get("DisplayName").cloned().unwrap_or(Value::Null),
        }),
        _ => Value::Null,
    };
    json!({ "Owner": owner, "Grants": grants })
}

fn encryption_shape(mut config: Value) -> Value {
    json!({ "Rules": into_list(take(&mut config, "Rule")) })
}

fn access_block_shape(config: Value) -> Value {
    let mut shaped = Map::new();
    for key in [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ] {
        shaped.insert(key.into(), config.get(key).cloned().unwrap_or(Value::Null));
    }
    Value::Object(shaped)
}

/// `{IsPublic}`, or null when the answer carries none (an emulator that does not know
/// GetBucketPolicyStatus answers with something else).
fn policy_status_shape(status: Value) -> Value {
    match status.get("IsPublic") {
        Some(v) => json!({ "IsPublic": v }),
        None => Value::Null,
    }
}

fn versioning_shape(config: Value) -> Value {
    let mut shaped = Map::new();
    if let Some(status) = text(&config, "Status") {
        shaped.insert("Status".into(), Value::String(status.to_string()));
    }
    if let Some(mfa) = text(&config, "MfaDelete").or_else(|| text(&config, "MFADelete")) {
        shaped.insert("MFADelete".into(), Value::String(mfa.to_string()));
    }
    Value::Object(shaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_from_location_answers() {
        assert_eq!(bucket_region(&json!("")), "us-east-1");
        assert_eq!(bucket_region(&json!("eu-west-1")), "eu-west-1");
        assert_eq!(bucket_region(&json!("EU")), "eu-west-1");
        assert_eq!(bucket_region(&json!({"_text": "ap-south-1"})), "ap-south-1");
        assert_eq!(bucket_region(&Value::Null), "us-east-1");
    }

    #[test]
    fn acl_grants_take_the_contract_shape() {
        let acl = json!({
            "Owner": {"ID": "o1", "DisplayName": "me"},
            "AccessControlList": {"Grant": {
                "Grantee": {"type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                "Permission": "READ"
            }}
        });
        assert_eq!(
            acl_shape(acl),
            json!({
                "Owner": {"ID": "o1", "DisplayName": "me"},
                "Grants": [{"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"}]
            })
        );
        assert_eq!(acl_shape(json!("")), json!({"Owner": null, "Grants": []}));
    }

    #[test]
    fn configurations_take_the_contract_shape() {
        let enc = json!({"Rule": {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": "false"}});
        assert_eq!(
            encryption_shape(enc),
            json!({"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": "false"}]})
        );
        assert_eq!(versioning_shape(json!("")), json!({}));
        assert_eq!(
            versioning_shape(json!({"Status": "Enabled", "MfaDelete": "Disabled"})),
            json!({"Status": "Enabled", "MFADelete": "Disabled"})
        );
        assert_eq!(
            policy_status_shape(json!({"IsTruncated": "false", "Name": "b"})),
            Value::Null
        );
        assert_eq!(
            policy_status_shape(json!({"IsPublic": "true"})),
            json!({"IsPublic": "true"})
        );
        assert_eq!(
            access_block_shape(json!({"BlockPublicAcls": "true"}))["IgnorePublicAcls"],
            Value::Null
        );
    }
}
