//! RDS walker: the DB instances of one region.
//!
//! Owns: DescribeDBInstances paging (API version 2014-10-31, `MaxRecords` 100, the most
//! RDS allows, `Marker` until the answer has none) and the unwrapping of RDS's wrapped
//! lists (`<TagList><Tag>..</Tag></TagList>` becomes `"TagList": [..]`).
//!
//! Must never: make a call per instance: the describe page carries everything stored.

use serde_json::Value;

use palisade_proto::ResourceType;

use super::{into_list, normalize_lists, tag_map, take, text, AwsSession, Emit, Found, ListShape};
use crate::harvest::HarvestError;

const VERSION: &str = "2014-10-31";
const PAGE_SIZE: &str = "100";

/// The lists of a `DBInstance`, with the name of their repeated child.
const LISTS: &[(&str, ListShape)] = &[
    ("TagList", ListShape::Wrapped("Tag")),
    (
        "VpcSecurityGroups",
        ListShape::Wrapped("VpcSecurityGroupMembership"),
    ),
    ("DBSecurityGroups", ListShape::Wrapped("DBSecurityGroup")),
    ("DBParameterGroups", ListShape::Wrapped("DBParameterGroup")),
    (
        "OptionGroupMemberships",
        ListShape::Wrapped("OptionGroupMembership"),
    ),
    (
        "ReadReplicaDBInstanceIdentifiers",
        ListShape::Wrapped("ReadReplicaDBInstanceIdentifier"),
    ),
    (
        "ReadReplicaDBClusterIdentifiers",
        ListShape::Wrapped("ReadReplicaDBClusterIdentifier"),
    ),
    ("StatusInfos", ListShape::Wrapped("DBInstanceStatusInfo")),
    ("DomainMemberships", ListShape::Wrapped("DomainMembership")),
    ("AssociatedRoles", ListShape::Wrapped("DBInstanceRole")),
    ("ProcessorFeatures", ListShape::Wrapped("ProcessorFeature")),
    ("Subnets", ListShape::Wrapped("Subnet")),
    (
        "DBInstanceAutomatedBackupsReplications",
        ListShape::Wrapped("DBInstanceAutomatedBackupsReplication"),
    ),
    ("EnabledCloudwatchLogsExports", ListShape::Direct),
];

/// `aws.rds.db-instance`: every instance of every page.
pub(crate) async fn db_instances(
    session: &AwsSession,
    region: &str,
    emit: &mut Emit<'_>,
) -> Result<(), HarvestError> {
    let mut marker: Option<String> = None;
    loop {
        let mut params = vec![("MaxRecords".to_string(), PAGE_SIZE.to_string())];
        if let Some(m) = &marker {
            params.push(("Marker".to_string(), m.clone()));
        }
        let mut page = session
            .query("rds", region, "DescribeDBInstances", VERSION, &params)
            .await?;
        let mut result = take(&mut page, "DescribeDBInstancesResult");
        let mut wrapper = take(&mut result, "DBInstances");
        for item in into_list(take(&mut wrapper, "DBInstance")) {
            if let Some(found) = db_instance(item) {
                emit.send(region, ResourceType::AwsRdsDbInstance, found)
                    .await?;
            }
        }
        marker = text(&result, "Marker").map(str::to_string);
        if marker.is_none() {
            return Ok(());
        }
    }
}

fn db_instance(mut item: Value) -> Option<Found> {
    normalize_lists(&mut item, LISTS, false);
    if let Value::Object(map) = &mut item {
        map.entry("TagList")
            .or_insert_with(|| Value::Array(Vec::new()));
    }
    let id = text(&item, "DBInstanceIdentifier")?.to_string();
    let tags = tag_map(&item["TagList"], "Key", "Value");
    Some(Found {
        id: id.clone(),
        name: id,
        tags,
        properties: item,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrapped_lists_become_arrays() {
        let item = json!({
            "DBInstanceIdentifier": "db1",
            "PubliclyAccessible": "true",
            "TagList": {"Tag": {"Key": "Owner", "Value": "a"}},
            "VpcSecurityGroups": {"VpcSecurityGroupMembership": [{"VpcSecurityGroupId": "sg-1"}, {"VpcSecurityGroupId": "sg-2"}]},
            "DBSecurityGroups": "",
            "EnabledCloudwatchLogsExports": "",
            "Endpoint": {"Address": "a", "Port": "5432"}
        });
        let f = db_instance(item).expect("has an id");
        assert_eq!(f.name, "db1");
        assert_eq!(f.tags.get("Owner").map(String::as_str), Some("a"));
        assert_eq!(
            f.properties["TagList"],
            json!([{"Key": "Owner", "Value": "a"}])
        );
        assert_eq!(
            f.properties["VpcSecurityGroups"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(f.properties["DBSecurityGroups"], json!([]));
        assert_eq!(f.properties["EnabledCloudwatchLogsExports"], json!([]));
        assert_eq!(f.properties["Endpoint"]["Port"], json!("5432"));
        let untagged = db_instance(json!({"DBInstanceIdentifier": "db2"})).expect("id");
        assert_eq!(untagged.properties["TagList"], json!([]));
    }
}
