//! EC2 walkers: instances, security groups, volumes and VPCs of one region.
//!
//! Owns: the paging of the four EC2 describe calls (API version 2016-11-15, `MaxResults`
//! 1000, `NextToken` until the answer has none) and the shape of their resources (see the
//! contract in [`super`]).
//!
//! Must never: make a call per resource: one describe page carries everything these types
//! store.

use serde_json::Value;

use palisade_proto::ResourceType;

use super::{
    ensure_lists, into_list, normalize_lists, tag_map, take, text, AwsSession, Emit, Found,
    ListShape,
};
use crate::harvest::HarvestError;

const VERSION: &str = "2016-11-15";
const PAGE_SIZE: &str = "1000";

/// EC2 lists whose element name does not end in `Set`.
const LISTS: &[(&str, ListShape)] = &[
    ("ipPermissions", ListShape::Direct),
    ("ipPermissionsEgress", ListShape::Direct),
    ("ipRanges", ListShape::Direct),
    ("ipv6Ranges", ListShape::Direct),
    ("groups", ListShape::Direct),
    ("prefixListIds", ListShape::Direct),
    ("blockDeviceMapping", ListShape::Direct),
    ("productCodes", ListShape::Direct),
];

/// Every page of one describe call: the items under `list_key` of each page, in order.
async fn walk(
    session: &AwsSession,
    region: &str,
    action: &str,
    list_key: &str,
    mut each: impl FnMut(Value) -> Vec<Found>,
    rtype: ResourceType,
    emit: &mut Emit<'_>,
) -> Result<(), HarvestError> {
    let mut token: Option<String> = None;
    loop {
        let mut params = vec![("MaxResults".to_string(), PAGE_SIZE.to_string())];
        if let Some(t) = &token {
            params.push(("NextToken".to_string(), t.clone()));
        }
        let mut page = session
            .query("ec2", region, action, VERSION, &params)
            .await?;
        for item in into_list(take(&mut page, list_key)) {
            for found in each(item) {
                emit.send(region, rtype, found).await?;
            }
        }
        match text(&page, "nextToken") {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(()),
        }
    }
}

/// Normalise an EC2 item's lists and build the resource: `id_key` names its id, `name`
/// its name when the `Name` tag is absent.
fn found(mut item: Value, id_key: &str, name_key: Option<&str>, lists: &[&str]) -> Option<Found> {
    normalize_lists(&mut item, LISTS, true);
    ensure_lists(&mut item, lists);
    let id = text(&item, id_key)?.to_string();
    let tags = tag_map(&item["tagSet"], "key", "value");
    let name = match name_key {
        Some(key) => text(&item, key).unwrap_or(&id).to_string(),
        None => tags.get("Name").cloned().unwrap_or_else(|| id.clone()),
    };
    Some(Found {
        id,
        name,
        tags,
        properties: item,
    })
}

/// `aws.ec2.instance`: every `instancesSet` item of every reservation.
pub(crate) async fn instances(
    session: &AwsSession,
    region: &str,
    emit: &mut Emit<'_>,
) -> Result<(), HarvestError> {
    let each = |mut reservation: Value| {
        into_list(take(&mut reservation, "instancesSet"))
            .into_iter()
            .filter_map(|i| found(i, "instanceId", None, &["tagSet", "groupSet"]))
            .collect()
    };
    walk(
        session,
        region,
        "DescribeInstances",
        "reservationSet",
        each,
        ResourceType::AwsEc2Instance,
        emit,
    )
    .await
}

/// `aws.ec2.security-group`.
pub(crate) async fn security_groups(
    session: &AwsSession,
    region: &str,
    emit: &mut Emit<'_>,
) -> Result<(), HarvestError> {
    let each = |item: Value| security_group(item).into_iter().collect();
    walk(
        session,
        region,
        "DescribeSecurityGroups",
        "securityGroupInfo",
        each,
        ResourceType::AwsEc2SecurityGroup,
        emit,
    )
    .await
}

/// A security group with both rule lists, and each rule's range lists, always arrays.
fn security_group(item: Value) -> Option<Found> {
    let lists = ["ipPermissions", "ipPermissionsEgress", "tagSet"];
    let mut f = found(item, "groupId", Some("groupName"), &lists)?;
    for key in ["ipPermissions", "ipPermissionsEgress"] {
        if let Some(Value::Array(rules)) = f.properties.get_mut(key) {
            for rule in rules {
                ensure_lists(rule, &["ipRanges", "ipv6Ranges", "groups", "prefixListIds"]);
            }
        }
    }
    Some(f)
}

/// `aws.ec2.volume`.
pub(crate) async fn volumes(
    session: &AwsSession,
    region: &str,
    emit: &mut Emit<'_>,
) -> Result<(), HarvestError> {
    let each = |item: Value| {
        found(item, "volumeId", None, &["attachmentSet", "tagSet"])
            .into_iter()
            .collect()
    };
    walk(
        session,
        region,
        "DescribeVolumes",
        "volumeSet",
        each,
        ResourceType::AwsEc2Volume,
        emit,
    )
    .await
}

/// `aws.ec2.vpc`.
pub(crate) async fn vpcs(
    session: &AwsSession,
    region: &str,
    emit: &mut Emit<'_>,
) -> Result<(), HarvestError> {
    let each = |item: Value| {
        found(item, "vpcId", None, &["tagSet"])
            .into_iter()
            .collect()
    };
    walk(
        session,
        region,
        "DescribeVpcs",
        "vpcSet",
        each,
        ResourceType::AwsEc2Vpc,
        emit,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn security_group_rules_are_always_arrays() {
        let item = json!({
            "groupId": "sg-1", "groupName": "web", "vpcId": "vpc-1",
            "ipPermissions": [{"ipProtocol": "-1", "ipRanges": {"cidrIp": "0.0.0.0/0"}, "groups": ""}],
            "ipPermissionsEgress": ""
        });
        let f = security_group(item).expect("has an id");
        assert_eq!(f.id, "sg-1");
        assert_eq!(f.name, "web");
        assert_eq!(
            f.properties["ipPermissions"][0]["ipRanges"],
            json!([{"cidrIp": "0.0.0.0/0"}])
        );
        assert_eq!(f.properties["ipPermissions"][0]["groups"], json!([]));
        assert_eq!(f.properties["ipPermissions"][0]["ipv6Ranges"], json!([]));
        assert_eq!(f.properties["ipPermissions"][0]["prefixListIds"], json!([]));
        assert_eq!(f.properties["ipPermissionsEgress"], json!([]));
        assert_eq!(f.properties["tagSet"], json!([]));
    }

    #[test]
    fn instance_name_comes_from_the_name_tag() {
        let item = json!({"instanceId": "i-1", "tagSet": [{"key": "Name", "value": "web"}, {"key": "Owner", "value": "a"}]});
        let f = found(item, "instanceId", None, &["tagSet", "groupSet"]).expect("has an id");
        assert_eq!((f.id.as_str(), f.name.as_str()), ("i-1", "web"));
        assert_eq!(f.tags.len(), 2);
        assert_eq!(f.properties["groupSet"], json!([]));
        let unnamed =
            found(json!({"volumeId": "vol-1"}), "volumeId", None, &["tagSet"]).expect("id");
        assert_eq!(unnamed.name, "vol-1");
        assert!(found(json!({"volumeId": ""}), "volumeId", None, &[]).is_none());
    }
}
