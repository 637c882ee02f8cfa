//! The AWS harvester: one walk of the AWS APIs per (resource type, region), turned into
//! [`Resource`]s sent down a bounded channel.
//!
//! Owns: [`AwsHarvester`] (sessions and the per-type dispatch), the per-service walkers
//! ([`ec2`], [`s3`], [`iam`], [`rds`], [`kms`], [`cloudtrail`], [`account`]) and the JSON
//! shape each resource type's `properties` take. The transport below them ([`transport`],
//! [`xml`], [`retry`], [`ratelimit`]) signs, paces, retries and decodes.
//!
//! Must never: write to the store (resources leave through the channel only), make a call
//! a minimal walk would not make (API calls per resource is benchmarked), or stop before
//! the last page: every `NextToken` / `nextToken` / `Marker` / `NextMarker` /
//! `ContinuationToken` is followed.
//!
//! # Resource shapes (the contract insights are written against)
//!
//! Keys keep the API's own names and casing. XML answers become JSON with these rules:
//! leaf text is a string (`"22"`, `"true"`); every list is an array, also with one or zero
//! elements (an empty list element becomes `[]`, and the list keys named below are `[]` when
//! the API leaves them out); an absent optional sub-document is `null`. `Resource.tags` is a
//! map built from the API's tag list.
//!
//! - `aws.ec2.instance` (regional; id `instanceId`, name tag `Name` or the id): one
//!   DescribeInstances `instancesSet` item, with `tagSet` and `groupSet` arrays.
//! - `aws.ec2.security-group` (regional; id `groupId`, name `groupName`): one
//!   DescribeSecurityGroups item; `ipPermissions` and `ipPermissionsEgress` are arrays of
//!   `{ipProtocol, fromPort?, toPort?, ipRanges: [{cidrIp}], ipv6Ranges: [{cidrIpv6}],
//!   groups: [..], prefixListIds: [..]}` (no ports for protocol `-1`); `tagSet`.
//! - `aws.ec2.volume` (regional; id `volumeId`): one DescribeVolumes item, `encrypted`
//!   `"true"|"false"`, `attachmentSet` and `tagSet` arrays.
//! - `aws.ec2.vpc` (regional; id `vpcId`): one DescribeVpcs item with `tagSet`.
//! - `aws.s3.bucket` (harvested once per account; region = the bucket's own, from
//!   GetBucketLocation, `us-east-1` when empty; id = name = bucket name):
//!   `{Name, CreationDate, Region, Acl: {Owner: {ID, DisplayName}, Grants: [{Grantee: {Type,
//!   ID?, URI?, DisplayName?, EmailAddress?}, Permission}]}, Encryption: null | {Rules: [..]},
//!   PublicAccessBlock: null | {BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy,
//!   RestrictPublicBuckets}, PolicyStatus: null | {IsPublic}, Versioning: {Status?,
//!   MFADelete?}}`. The detail calls are signed for the bucket's region. An answer to
//!   GetBucketPolicyStatus that carries no `IsPublic` (an emulator that does not know the
//!   call) is taken as `null`.
//! - `aws.iam.user` (global; region `global`; id = name = `UserName`): the ListUsers member
//!   plus `MFADevices: [{SerialNumber, EnableDate}]`, `LoginProfile: null | {CreateDate,
//!   PasswordResetRequired}`, `AccessKeys: [{AccessKeyId, Status, CreateDate}]`, `Tags`
//!   (as ListUsers gives them; `[]` when it gives none).
//! - `aws.rds.db-instance` (regional; id = name = `DBInstanceIdentifier`): one
//!   DescribeDBInstances `DBInstance`, its wrapped lists (`TagList`, `VpcSecurityGroups`,
//!   ...) unwrapped to arrays; `PubliclyAccessible`, `StorageEncrypted` `"true"|"false"`.
//! - `aws.kms.key` (regional; id `KeyId`, name = first alias or the id): DescribeKey's
//!   `KeyMetadata` (real JSON types) plus `KeyRotationEnabled` (GetKeyRotationStatus, asked
//!   only for enabled customer keys; `null` otherwise) and `Aliases: ["alias/x"]`.
//! - `aws.cloudtrail.trail` (regional; each trail stored once, in its `HomeRegion`; id
//!   `TrailARN`, name `Name`): the DescribeTrails entry plus `IsLogging` (GetTrailStatus).
//! - `aws.account` (global; region `global`; id = name = the account id):
//!   `{AccountId, Arn (the caller), Trails: [{TrailARN, Name, HomeRegion,
//!   IsMultiRegionTrail, IsLogging}]}` over every trail DescribeTrails shows in the cloud's
//!   configured regions, de-duplicated by ARN.
//!
//! "Not found" answers to a detail call (no encryption configuration, no public access
//! block, no bucket policy, no login profile) are `null`, not failures; a resource that
//! disappears between its listing and its detail calls is left out.

pub mod account;
pub mod cloudtrail;
pub mod ec2;
pub mod iam;
pub mod kms;
pub mod ratelimit;
pub mod rds;
pub mod retry;
pub mod s3;
pub mod transport;
pub mod xml;

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

use palisade_proto::{CloudAccount, CloudId, Resource, ResourceType, Timestamp};

use crate::harvest::HarvestError;
use crate::proxy::ProxyConfig;
use crate::settings::AwsSettings;

pub use transport::{AwsError, AwsSession, AwsTransport};

/// Detail calls (one per listed resource) in flight at once within one harvest unit.
pub(crate) const DETAIL_CONCURRENCY: usize = 4;

/// Harvests AWS accounts: opens sessions and walks one resource type at a time.
pub struct AwsHarvester {
    transport: Arc<AwsTransport>,
}

impl AwsHarvester {
    /// A harvester over one transport (HTTP client, proxy rules, endpoints, rate limits).
    pub fn new(settings: &AwsSettings, proxy: ProxyConfig) -> Result<Self, HarvestError> {
        let transport = AwsTransport::new(settings, proxy)?;
        Ok(AwsHarvester {
            transport: Arc::new(transport),
        })
    }

    /// A harvester over an existing transport (tests point one at an emulator).
    pub fn with_transport(transport: Arc<AwsTransport>) -> Self {
        AwsHarvester { transport }
    }

    /// Resolve the cloud's credentials and learn its account id.
    pub async fn session(&self, cloud: &CloudAccount) -> Result<AwsSession, HarvestError> {
        Ok(self.transport.session(&cloud.credentials).await?)
    }

    /// Walk every page of one resource type in one region (`global` for types harvested
    /// once per account) and send each resource, stamped `at`, into `out`. Returns how many
    /// were sent.
    pub async fn harvest_type(
        &self,
        session: &AwsSession,
        cloud: &CloudAccount,
        region: &str,
        rtype: ResourceType,
        at: Timestamp,
        out: &mpsc::Sender<Resource>,
    ) -> Result<u64, HarvestError> {
        let mut emit = Emit {
            cloud: &cloud.id,
            account: session.account_id().to_string(),
            at,
            out,
            sent: 0,
        };
        match rtype {
            ResourceType::AwsEc2Instance => ec2::instances(session, region, &mut emit).await?,
            ResourceType::AwsEc2SecurityGroup => {
                ec2::security_groups(session, region, &mut emit).await?
            }
            ResourceType::AwsEc2Volume => ec2::volumes(session, region, &mut emit).await?,
            ResourceType::AwsEc2Vpc => ec2::vpcs(session, region, &mut emit).await?,
            ResourceType::AwsS3Bucket => s3::buckets(session, &mut emit).await?,
            ResourceType::AwsIamUser => iam::users(session, &mut emit).await?,
            ResourceType::AwsRdsDbInstance => rds::db_instances(session, region, &mut emit).await?,
            ResourceType::AwsKmsKey => kms::keys(session, region, &mut emit).await?,
            ResourceType::AwsCloudtrailTrail => {
                cloudtrail::trails(session, region, &mut emit).await?
            }
            ResourceType::AwsAccount => {
                account::account(session, &cloud.regions, &mut emit).await?
            }
        }
        Ok(emit.sent)
    }
}

impl From<AwsError> for HarvestError {
    fn from(e: AwsError) -> Self {
        match e {
            AwsError::Credentials(_) => HarvestError::Credentials(e.to_string()),
            AwsError::Throttled { .. } => HarvestError::Throttled(e.to_string()),
            AwsError::Transport(_) => HarvestError::Transport(e.to_string()),
            AwsError::Api { .. } | AwsError::Decode(_) => HarvestError::Api(e.to_string()),
        }
    }
}

/// One resource as a walker found it, before it is stamped and sent.
pub(crate) struct Found {
    pub id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub properties: Value,
}

/// Where a walker sends what it finds: stamps each resource with the cloud, the account
/// and the harvest's instant, and counts what it sent.
pub(crate) struct Emit<'a> {
    cloud: &'a CloudId,
    account: String,
    at: Timestamp,
    out: &'a mpsc::Sender<Resource>,
    sent: u64,
}

impl Emit<'_> {
    /// Send one resource; fails only when the receiving side has gone away.
    pub(crate) async fn send(
        &mut self,
        region: &str,
        rtype: ResourceType,
        found: Found,
    ) -> Result<(), HarvestError> {
        let resource = Resource::harvested(
            self.cloud,
            &self.account,
            region,
            rtype,
            found.id,
            found.name,
            found.tags,
            found.properties,
            self.at,
        );
        self.out
            .send(resource)
            .await
            .map_err(|_| HarvestError::Cancelled)?;
        self.sent += 1;
        Ok(())
    }
}

/// A non-empty string field of an object.
pub(crate) fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The owned form of [`xml::list`]: an array stays, `""` and null become empty, anything
/// else becomes a one-element list.
pub(crate) fn into_list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        other => vec![other],
    }
}

/// Take `key` out of an object (null when absent).
pub(crate) fn take(v: &mut Value, key: &str) -> Value {
    v.get_mut(key).map(Value::take).unwrap_or(Value::Null)
}

/// How a list appears in converted XML.
#[derive(Clone, Copy)]
pub(crate) enum ListShape {
    /// The element itself holds the items (`<item>`/`<member>` children, or `""`).
    Direct,
    /// The element wraps repeated `<Name>` children (`<TagList><Tag>..</Tag></TagList>`).
    Wrapped(&'static str),
}

/// Rewrite, at any depth, every field named in `lists` (or, with `set_suffix`, every
/// field whose name ends in `Set`) into a JSON array.
pub(crate) fn normalize_lists(v: &mut Value, lists: &[(&str, ListShape)], set_suffix: bool) {
    match v {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                let shape = lists
                    .iter()
                    .find(|(name, _)| name == key)
                    .map(|(_, shape)| *shape)
                    .or_else(|| (set_suffix && key.ends_with("Set")).then_some(ListShape::Direct));
                if let Some(shape) = shape {
                    let items = match shape {
                        ListShape::Direct => into_list(field.take()),
                        ListShape::Wrapped(child) => match field.take() {
                            Value::Array(items) => items,
                            mut other => into_list(take(&mut other, child)),
                        },
                    };
                    *field = Value::Array(items);
                }
                normalize_lists(field, lists, set_suffix);
            }
        }
        Value::Array(items) => {
            for item in items {
                normalize_lists(item, lists, set_suffix);
            }
        }
        _ => {}
    }
}

/// Give `v` an empty array under each of `keys` it lacks.
pub(crate) fn ensure_lists(v: &mut Value, keys: &[&str]) {
    if let Value::Object(map) = v {
        for key in keys {
            map.entry(*key).or_insert_with(|| Value::Array(Vec::new()));
        }
    }
}

/// A tag map from a tag list of `{key_field, value_field}` objects.
pub(crate) fn tag_map(
    list: &Value,
    key_field: &str,
    value_field: &str,
) -> BTreeMap<String, String> {
    xml::list(list)
        .into_iter()
        .filter_map(|t| {
            let key = t.get(key_field)?.as_str()?;
            let value = t.get(value_field).and_then(Value::as_str).unwrap_or("");
            Some((key.to_string(), value.to_string()))
        })
        .collect()
}

/// Whether an error is the API saying "there is no such thing" with one of `codes`.
pub(crate) fn is_code(e: &AwsError, codes: &[&str]) -> bool {
    e.code().is_some_and(|c| codes.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_are_normalized_at_any_depth() {
        let mut v = json!({
            "tagSet": "",
            "groupSet": {"groupId": "sg-1"},
            "ipPermissions": [{"ipRanges": "", "groups": [{"groupId": "sg-2"}]}],
            "TagList": {"Tag": {"Key": "a", "Value": "b"}},
            "Other": {"Tag": "stays"},
            "instanceState": {"code": "16", "name": "running"}
        });
        let lists = [
            ("ipPermissions", ListShape::Direct),
            ("ipRanges", ListShape::Direct),
            ("groups", ListShape::Direct),
            ("TagList", ListShape::Wrapped("Tag")),
        ];
        normalize_lists(&mut v, &lists, true);
        ensure_lists(&mut v, &["attachmentSet", "tagSet"]);
        assert_eq!(
            v,
            json!({
                "tagSet": [],
                "groupSet": [{"groupId": "sg-1"}],
                "ipPermissions": [{"ipRanges": [], "groups": [{"groupId": "sg-2"}]}],
                "TagList": [{"Key": "a", "Value": "b"}],
                "Other": {"Tag": "stays"},
                "instanceState": {"code": "16", "name": "running"},
                "attachmentSet": []
            })
        );
        assert_eq!(
            tag_map(&v["TagList"], "Key", "Value")
                .get("a")
                .map(String::as_str),
            Some("b")
        );
    }
}
