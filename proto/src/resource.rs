//! Harvested resources: what a cloud has, as Palisade last saw it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

use crate::{CloudId, Provider, Timestamp};

/// Whether a resource type is harvested per region or once per account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One harvest per configured region.
    Regional,
    /// One harvest per account; resources carry their own region (`global` for IAM).
    Global,
}

macro_rules! resource_types {
    ($( $variant:ident => $name:literal, $scope:ident; )*) => {
        /// A kind of cloud resource Palisade knows how to harvest.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum ResourceType {
            $( #[serde(rename = $name)] $variant, )*
        }

        impl ResourceType {
            /// Every known type, in a stable order.
            pub const ALL: &'static [ResourceType] = &[$( ResourceType::$variant, )*];

            /// The dotted name used in the API and in insights (`aws.ec2.instance`).
            pub fn as_str(self) -> &'static str {
                match self { $( ResourceType::$variant => $name, )* }
            }

            /// Whether this type is harvested per region or once per account.
            pub fn scope(self) -> Scope {
                match self { $( ResourceType::$variant => Scope::$scope, )* }
            }
        }

        impl std::str::FromStr for ResourceType {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $name => Ok(ResourceType::$variant), )*
                    other => Err(format!("unknown resource type {other:?}")),
                }
            }
        }
    };
}

resource_types! {
    AwsAccount => "aws.account", Global;
    AwsEc2Instance => "aws.ec2.instance", Regional;
    AwsEc2SecurityGroup => "aws.ec2.security-group", Regional;
    AwsEc2Volume => "aws.ec2.volume", Regional;
    AwsEc2Vpc => "aws.ec2.vpc", Regional;
    AwsS3Bucket => "aws.s3.bucket", Global;
    AwsIamUser => "aws.iam.user", Global;
    AwsRdsDbInstance => "aws.rds.db-instance", Regional;
    AwsKmsKey => "aws.kms.key", Regional;
    AwsCloudtrailTrail => "aws.cloudtrail.trail", Regional;
}

impl ResourceType {
    /// The provider that owns this type.
    pub fn provider(self) -> Provider {
        Provider::Aws
    }

    /// Every type of one provider.
    pub fn of_provider(provider: Provider) -> impl Iterator<Item = ResourceType> {
        ResourceType::ALL
            .iter()
            .copied()
            .filter(move |t| t.provider() == provider)
    }
}

/// The schema lists the dotted names (the derive would see the variants' Rust names
/// through the declaring macro).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ResourceType {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        utoipa::openapi::RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(ResourceType::ALL.iter().map(|t| t.as_str())))
                .description(Some(
                    "A kind of cloud resource Palisade knows how to harvest (`aws.ec2.instance`).",
                ))
                .build(),
        ))
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ResourceType {}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Region name used for resources that belong to no region (IAM, the account itself).
pub const GLOBAL_REGION: &str = "global";

crate::id::string_id!(
    /// Palisade's stable key for a resource: a hash of (cloud, type, region, native id), so
    /// the same resource harvested twice, by any node, gets the same key.
    ResourceUid
);

impl ResourceUid {
    pub fn derive(cloud: &CloudId, rtype: ResourceType, region: &str, id: &str) -> Self {
        let mut h = Sha256::new();
        for part in [cloud.as_str(), rtype.as_str(), region, id] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let digest = h.finalize();
        ResourceUid(hex::encode(&digest[..16]))
    }
}

/// One harvested resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resource {
    /// Palisade's key, see [`ResourceUid`].
    pub uid: ResourceUid,
    pub cloud: CloudId,
    pub provider: Provider,
    /// The cloud's own account identifier (AWS account id).
    pub account: String,
    /// Region, or `global`.
    pub region: String,
    #[serde(rename = "type")]
    pub rtype: ResourceType,
    /// The cloud's own identifier (instance id, bucket name, user name, key id, trail ARN).
    pub id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// The API's own description of the resource, as JSON.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub properties: serde_json::Value,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub first_seen: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: Timestamp,
    /// When a later harvest stopped seeing the resource.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub deleted_at: Option<Timestamp>,
}

impl Resource {
    /// A freshly harvested resource: first and last seen `now`, uid derived.
    #[allow(clippy::too_many_arguments)]
    pub fn harvested(
        cloud: &CloudId,
        account: &str,
        region: &str,
        rtype: ResourceType,
        id: impl Into<String>,
        name: impl Into<String>,
        tags: BTreeMap<String, String>,
        properties: serde_json::Value,
        now: Timestamp,
    ) -> Self {
        let id = id.into();
        Resource {
            uid: ResourceUid::derive(cloud, rtype, region, &id),
            cloud: cloud.clone(),
            provider: rtype.provider(),
            account: account.to_string(),
            region: region.to_string(),
            rtype,
            id,
            name: name.into(),
            tags,
            properties,
            first_seen: now,
            last_seen: now,
            deleted_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for t in ResourceType::ALL {
            assert_eq!(t.as_str().parse::<ResourceType>(), Ok(*t));
            let json = serde_json::to_string(t).expect("serialize");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert!("aws.ec2.nothing".parse::<ResourceType>().is_err());
    }

    #[test]
    fn uid_is_stable_and_distinguishes_parts() {
        let c = CloudId("c1".into());
        let a = ResourceUid::derive(&c, ResourceType::AwsEc2Instance, "us-east-1", "i-1");
        let b = ResourceUid::derive(&c, ResourceType::AwsEc2Instance, "us-east-1", "i-1");
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 32);
        let other = ResourceUid::derive(&c, ResourceType::AwsEc2Instance, "us-east-2", "i-1");
        assert_ne!(a, other);
        // the separator keeps ("ab","c") and ("a","bc") apart
        let x = ResourceUid::derive(&c, ResourceType::AwsEc2Instance, "ab", "c");
        let y = ResourceUid::derive(&c, ResourceType::AwsEc2Instance, "a", "bc");
        assert_ne!(x, y);
    }
}
