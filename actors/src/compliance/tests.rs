//! Tests of the built-in insights on hand-made resources (compliant and non-compliant
//! variants of each), and of `run_compliance` against the embedded store.

use super::*;
use crate::settings::ComplianceSettings;
use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};

fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0)
        .single()
        .expect("valid date")
}

fn settings(tags: &[&str]) -> ComplianceSettings {
    ComplianceSettings {
        required_tags: tags.iter().map(|t| t.to_string()).collect(),
        page_size: 100,
    }
}

fn catalog() -> Catalog {
    Catalog::builtin(&settings(&["Owner"])).expect("built-in insights compile")
}

fn res(rtype: ResourceType, id: &str, tags: &[(&str, &str)], props: Value) -> Resource {
    Resource::harvested(
        &CloudId("cloud-1".into()),
        "123456789012",
        "us-east-1",
        rtype,
        id,
        id,
        tags.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        props,
        now(),
    )
}

/// The ids of the built-in insights that fire on `r`; the run's read path (the stored text,
/// parsed only as far as the insights read it) must agree with the decoded resource.
fn fired(cat: &Catalog, r: &Resource) -> Vec<String> {
    let full: Vec<String> = cat.matching(r, now()).map(|i| i.id.0.clone()).collect();
    let mut page = RawPage::default();
    page.push_resource(r).expect("encodes");
    let outcome = cat.evaluate_page(&page, now()).expect("evaluates");
    let projected: Vec<String> = outcome
        .findings
        .iter()
        .map(|f| f.insight.0.clone())
        .collect();
    assert_eq!(full, projected, "the projected read disagrees on {}", r.id);
    full
}

const ALL_IDS: &[&str] = &[
    "aws-sg-ingress-22-world",
    "aws-sg-ingress-3389-world",
    "aws-s3-public-acl",
    "aws-s3-no-default-encryption",
    "aws-ec2-missing-owner-tag",
    "aws-ebs-unencrypted",
    "aws-iam-user-no-mfa",
    "aws-iam-console-user-no-mfa",
    "aws-iam-access-key-90d",
    "aws-rds-public",
    "aws-rds-unencrypted",
    "aws-kms-rotation-disabled",
    "aws-cloudtrail-not-multi-region",
    "aws-account-no-multi-region-trail",
];

#[test]
fn builtin_insights_all_compile_with_the_expected_ids() {
    let cat = catalog();
    let ids: Vec<&str> = cat.list().iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ALL_IDS);
    for i in cat.list() {
        assert!(!i.name.is_empty() && !i.description.is_empty(), "{}", i.id);
        assert!(cat.get(i.id.as_str()).is_some());
    }
    assert!(cat.get("nope").is_none());
    // every type but the VPC is named by some insight
    assert_eq!(cat.resource_types().len(), ResourceType::ALL.len() - 1);
    assert!(!cat.resource_types().contains(&ResourceType::AwsEc2Vpc));
}

#[test]
fn duplicate_ids_are_refused() {
    let mut twice = builtin::compile_all(&settings(&["Owner"])).expect("compiles");
    twice.push(twice[0].clone());
    assert_eq!(
        Catalog::new(twice).expect_err("duplicate").to_string(),
        "insight id \"aws-sg-ingress-22-world\" is defined twice"
    );
}

fn sg(perms: Value) -> Resource {
    res(
        ResourceType::AwsEc2SecurityGroup,
        "sg-1",
        &[],
        json!({"groupId": "sg-1", "groupName": "web", "vpcId": "vpc-1", "ownerId": "123456789012",
               "groupDescription": "d", "ipPermissions": perms, "ipPermissionsEgress": [
                   {"ipProtocol": "-1", "ipRanges": [{"cidrIp": "0.0.0.0/0"}], "ipv6Ranges": [],
                    "groups": [], "prefixListIds": []}], "tagSet": []}),
    )
}

fn perm(proto: &str, ports: Option<(&str, &str)>, v4: &[&str], v6: &[&str]) -> Value {
    let mut p = json!({
        "ipProtocol": proto,
        "ipRanges": v4.iter().map(|c| json!({"cidrIp": c})).collect::<Vec<_>>(),
        "ipv6Ranges": v6.iter().map(|c| json!({"cidrIpv6": c})).collect::<Vec<_>>(),
        "groups": [], "prefixListIds": []
    });
    if let Some((from, to)) = ports {
        p["fromPort"] = json!(from);
        p["toPort"] = json!(to);
    }
    p
}

#[test]
fn security_group_world_ingress() {
    let cat = catalog();
    let both = ["aws-sg-ingress-22-world", "aws-sg-ingress-3389-world"];
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!([perm("tcp", Some(("22", "22")), &["0.0.0.0/0"], &[])]),
            vec![both[0]],
        ),
        (
            json!([perm("tcp", Some(("3389", "3389")), &[], &["::/0"])]),
            vec![both[1]],
        ),
        (
            json!([perm("tcp", Some(("0", "65535")), &["0.0.0.0/0"], &[])]),
            both.to_vec(),
        ),
        (
            json!([perm("-1", None, &["0.0.0.0/0"], &[])]),
            both.to_vec(),
        ),
        (
            json!([perm("tcp", Some(("20", "21")), &["0.0.0.0/0"], &[])]),
            vec![],
        ),
        (
            json!([perm("tcp", Some(("23", "3388")), &["0.0.0.0/0"], &[])]),
            vec![],
        ),
        (
            json!([perm(
                "tcp",
                Some(("22", "22")),
                &["10.0.0.0/8"],
                &["2001:db8::/32"]
            )]),
            vec![],
        ),
        (
            json!([perm("udp", Some(("0", "65535")), &["0.0.0.0/0"], &[])]),
            vec![],
        ),
        (json!([perm("-1", None, &["192.168.0.0/16"], &[])]), vec![]),
        (json!([]), vec![]),
        // two rules, neither alone: port 22 from a private range, port 80 from the world
        (
            json!([
                perm("tcp", Some(("22", "22")), &["10.0.0.0/8"], &[]),
                perm("tcp", Some(("80", "80")), &["0.0.0.0/0"], &[])
            ]),
            vec![],
        ),
    ];
    for (perms, want) in cases {
        assert_eq!(fired(&cat, &sg(perms.clone())), want, "{perms}");
    }
}

fn bucket(grants: Value, encryption: Value) -> Resource {
    res(
        ResourceType::AwsS3Bucket,
        "b1",
        &[],
        json!({"Name": "b1", "CreationDate": "2024-01-01T00:00:00.000Z", "Region": "us-east-1",
               "Acl": {"Owner": {"ID": "abc", "DisplayName": "me"}, "Grants": grants},
               "Encryption": encryption, "PublicAccessBlock": null, "PolicyStatus": null,
               "Versioning": {}}),
    )
}

#[test]
fn s3_public_acl_and_default_encryption() {
    let cat = catalog();
    let owner =
        json!({"Grantee": {"Type": "CanonicalUser", "ID": "abc"}, "Permission": "FULL_CONTROL"});
    let group = |uri: &str| json!({"Grantee": {"Type": "Group", "URI": uri}, "Permission": "READ"});
    let sse =
        json!({"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]});
    assert_eq!(
        fired(&cat, &bucket(json!([owner.clone()]), sse.clone())),
        Vec::<String>::new()
    );
    assert_eq!(
        fired(
            &cat,
            &bucket(
                json!([
                    owner.clone(),
                    group("http://acs.amazonaws.com/groups/global/AllUsers")
                ]),
                sse.clone()
            )
        ),
        ["aws-s3-public-acl"]
    );
    assert_eq!(
        fired(
            &cat,
            &bucket(
                json!([group(
                    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
                )]),
                sse.clone()
            )
        ),
        ["aws-s3-public-acl"]
    );
    assert_eq!(
        fired(
            &cat,
            &bucket(
                json!([group("http://acs.amazonaws.com/groups/s3/LogDelivery")]),
                sse
            )
        ),
        Vec::<String>::new()
    );
    for no_sse in [json!(null), json!({"Rules": []})] {
        assert_eq!(
            fired(&cat, &bucket(json!([owner.clone()]), no_sse)),
            ["aws-s3-no-default-encryption"]
        );
    }
}

fn instance(state: &str, tags: &[(&str, &str)]) -> Resource {
    res(
        ResourceType::AwsEc2Instance,
        "i-1",
        tags,
        json!({"instanceId": "i-1", "instanceType": "t3.micro", "imageId": "ami-1",
               "instanceState": {"code": "16", "name": state}, "launchTime": "2024-01-01T00:00:00Z",
               "tagSet": tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()}),
    )
}

#[test]
fn ec2_missing_owner_tag_uses_the_configured_keys() {
    let cat = catalog();
    let id = ["aws-ec2-missing-owner-tag"];
    assert_eq!(fired(&cat, &instance("running", &[("Name", "web")])), id);
    assert_eq!(fired(&cat, &instance("stopped", &[])), id);
    assert_eq!(
        fired(&cat, &instance("running", &[("Owner", "alice")])),
        Vec::<String>::new()
    );
    assert_eq!(
        fired(&cat, &instance("terminated", &[])),
        Vec::<String>::new()
    );
    // the tag key is exact: `owner` is not `Owner`
    assert_eq!(fired(&cat, &instance("running", &[("owner", "x")])), id);

    let two = Catalog::builtin(&settings(&["Owner", "CostCenter"])).expect("compiles");
    assert_eq!(fired(&two, &instance("running", &[("Owner", "a")])), id);
    assert_eq!(
        fired(
            &two,
            &instance("running", &[("Owner", "a"), ("CostCenter", "1")])
        ),
        Vec::<String>::new()
    );
    let none = Catalog::builtin(&settings(&[])).expect("compiles");
    assert_eq!(
        fired(&none, &instance("running", &[])),
        Vec::<String>::new()
    );
}

#[test]
fn ebs_rds_kms_and_cloudtrail() {
    let cat = catalog();
    let none = Vec::<String>::new();
    let vol = |enc: &str| {
        res(
            ResourceType::AwsEc2Volume,
            "vol-1",
            &[],
            json!({"volumeId": "vol-1", "size": "8", "volumeType": "gp3", "encrypted": enc,
                   "state": "in-use", "attachmentSet": [], "tagSet": []}),
        )
    };
    assert_eq!(fired(&cat, &vol("false")), ["aws-ebs-unencrypted"]);
    assert_eq!(fired(&cat, &vol("true")), none);

    let db = |public: &str, enc: &str| {
        res(
            ResourceType::AwsRdsDbInstance,
            "db1",
            &[],
            json!({"DBInstanceIdentifier": "db1", "Engine": "postgres",
                   "PubliclyAccessible": public, "StorageEncrypted": enc, "TagList": []}),
        )
    };
    assert_eq!(fired(&cat, &db("true", "true")), ["aws-rds-public"]);
    assert_eq!(fired(&cat, &db("false", "false")), ["aws-rds-unencrypted"]);
    assert_eq!(
        fired(&cat, &db("true", "false")),
        ["aws-rds-public", "aws-rds-unencrypted"]
    );
    assert_eq!(fired(&cat, &db("false", "true")), none);

    let key = |manager: &str, enabled: bool, rotation: Value| {
        res(
            ResourceType::AwsKmsKey,
            "k1",
            &[],
            json!({"KeyId": "k1", "KeyManager": manager, "KeyState": if enabled {"Enabled"} else {"Disabled"},
                   "Enabled": enabled, "KeyRotationEnabled": rotation, "Aliases": []}),
        )
    };
    assert_eq!(
        fired(&cat, &key("CUSTOMER", true, json!(false))),
        ["aws-kms-rotation-disabled"]
    );
    assert_eq!(fired(&cat, &key("CUSTOMER", true, json!(true))), none);
    assert_eq!(fired(&cat, &key("CUSTOMER", false, json!(null))), none);
    assert_eq!(fired(&cat, &key("AWS", true, json!(null))), none);

    let trail = |multi: bool| {
        res(
            ResourceType::AwsCloudtrailTrail,
            "arn:aws:cloudtrail:us-east-1:123456789012:trail/t",
            &[],
            json!({"Name": "t", "HomeRegion": "us-east-1", "IsMultiRegionTrail": multi, "IsLogging": true}),
        )
    };
    assert_eq!(
        fired(&cat, &trail(false)),
        ["aws-cloudtrail-not-multi-region"]
    );
    assert_eq!(fired(&cat, &trail(true)), none);
}

fn user(mfa: bool, console: bool, keys: Value) -> Resource {
    res(
        ResourceType::AwsIamUser,
        "alice",
        &[],
        json!({"UserName": "alice", "UserId": "AID1", "Arn": "arn:aws:iam::123456789012:user/alice",
               "Path": "/", "CreateDate": "2020-01-01T00:00:00Z",
               "MFADevices": if mfa { json!([{"SerialNumber": "arn:mfa", "EnableDate": "2020-01-01T00:00:00Z"}]) } else { json!([]) },
               "LoginProfile": if console { json!({"CreateDate": "2020-01-01T00:00:00Z", "PasswordResetRequired": "false"}) } else { json!(null) },
               "AccessKeys": keys, "Tags": []}),
    )
}

fn key_aged(days: i64, status: &str) -> Value {
    json!({"AccessKeyId": "AKIA", "Status": status,
           "CreateDate": (now() - Duration::days(days)).to_rfc3339()})
}

#[test]
fn iam_mfa_and_access_key_age() {
    let cat = catalog();
    let none = Vec::<String>::new();
    assert_eq!(fired(&cat, &user(true, true, json!([]))), none);
    assert_eq!(
        fired(&cat, &user(false, false, json!([]))),
        ["aws-iam-user-no-mfa"]
    );
    assert_eq!(
        fired(&cat, &user(false, true, json!([]))),
        ["aws-iam-user-no-mfa", "aws-iam-console-user-no-mfa"]
    );
    assert_eq!(
        fired(&cat, &user(true, false, json!([key_aged(91, "Active")]))),
        ["aws-iam-access-key-90d"]
    );
    assert_eq!(
        fired(&cat, &user(true, false, json!([key_aged(89, "Active")]))),
        none
    );
    assert_eq!(
        fired(&cat, &user(true, false, json!([key_aged(400, "Inactive")]))),
        none
    );
    // two old active keys: still one finding, on the user
    let r = user(
        true,
        false,
        json!([key_aged(91, "Active"), key_aged(200, "Active")]),
    );
    assert_eq!(fired(&cat, &r), ["aws-iam-access-key-90d"]);
    // the same key is young when `now` is earlier
    let i = cat.get("aws-iam-access-key-90d").expect("exists");
    assert!(!i.matches(&r, now() - Duration::days(150)));
}

#[test]
fn account_without_a_logging_multi_region_trail() {
    let cat = catalog();
    let account = |trails: Value| {
        res(
            ResourceType::AwsAccount,
            "123456789012",
            &[],
            json!({"AccountId": "123456789012", "Arn": "arn:aws:iam::123456789012:root", "Trails": trails}),
        )
    };
    let t = |multi: &str, logging: bool| {
        json!({"TrailARN": "arn:t", "Name": "t", "HomeRegion": "us-east-1",
                                                 "IsMultiRegionTrail": multi, "IsLogging": logging})
    };
    let id = ["aws-account-no-multi-region-trail"];
    assert_eq!(fired(&cat, &account(json!([]))), id);
    assert_eq!(
        fired(&cat, &account(json!([t("true", false), t("false", true)]))),
        id
    );
    assert_eq!(
        fired(&cat, &account(json!([t("false", true), t("true", true)]))),
        Vec::<String>::new()
    );
}

// ---------------------------------------------------------------------------------------
// run_compliance against the embedded store

#[tokio::test]
async fn run_opens_then_resolves_findings_and_keeps_first_seen() {
    // syncing after every page, every other page, and once at the end
    for sync_findings in [1, 2, SYNC_FINDINGS] {
        opens_then_resolves(sync_findings).await;
    }
}

async fn opens_then_resolves(sync_findings: usize) {
    let store = crate::store::open("sqlite::memory:")
        .await
        .expect("in-memory store opens");
    let cat = catalog();
    let t0 = now();

    // five volumes (page size 2, so three pages), three unencrypted, plus a compliant user
    let vols: Vec<Resource> = (0..5)
        .map(|n| {
            res(
                ResourceType::AwsEc2Volume,
                &format!("vol-{n}"),
                &[],
                json!({"volumeId": format!("vol-{n}"), "encrypted": if n < 3 { "false" } else { "true" }}),
            )
        })
        .collect();
    let mut batch = vols.clone();
    batch.push(user(true, false, json!([])));
    store.upsert_resources(batch).await.expect("upsert");

    let first = run_syncing(&*store, &cat, None, t0, 2, sync_findings)
        .await
        .expect("first run");
    assert_eq!(first.evaluated, 6);
    assert_eq!(first.open, 3);
    assert_eq!(first.resolved, 0);
    assert_eq!(first.per_insight["aws-ebs-unencrypted"], 3);
    assert_eq!(first.per_insight["aws-iam-user-no-mfa"], 0);
    assert_eq!(first.per_insight.len(), ALL_IDS.len());

    // a later harvest: vol-0 is now encrypted, vol-1 is gone, the others unchanged
    let t1 = t0 + Duration::hours(1);
    let mut seen: Vec<Resource> = vec![vols[0].clone()];
    seen.extend(vols[2..].iter().cloned());
    seen[0].properties["encrypted"] = json!("true");
    for r in &mut seen {
        r.last_seen = t1;
    }
    store.upsert_resources(seen).await.expect("upsert");
    let swept = store
        .mark_deleted(&crate::store::DeletionSweep {
            cloud: vols[1].cloud.clone(),
            rtype: ResourceType::AwsEc2Volume,
            region: Some("us-east-1".into()),
            seen_before: t1,
            now: t1,
        })
        .await
        .expect("sweep");
    assert_eq!(swept, 1);

    let second = run_syncing(&*store, &cat, None, t1, 2, sync_findings)
        .await
        .expect("second run");
    assert_eq!(second.evaluated, 5, "vol-1 is deleted");
    assert_eq!(second.open, 1, "only vol-2 is still unencrypted");
    assert_eq!(second.resolved, 2, "vol-0 fixed, vol-1 gone");

    let findings = store
        .list_findings(&crate::store::FindingQuery {
            insight: Some(InsightId("aws-ebs-unencrypted".into())),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list findings");
    assert_eq!(findings.total, 3);
    for f in &findings.items {
        assert_eq!(f.first_seen, t0, "first_seen kept for {}", f.resource);
        match f.resource.as_str() {
            "vol-2" => {
                assert_eq!(f.state, FindingState::Open);
                assert_eq!(f.last_seen, t1);
            }
            "vol-0" | "vol-1" => {
                assert_eq!(f.state, FindingState::Resolved);
                assert_eq!(f.resolved_at, Some(t1));
            }
            other => panic!("unexpected finding on {other}"),
        }
    }

    // Nothing changed since: a third run opens and resolves nothing.
    let third = run_syncing(
        &*store,
        &cat,
        None,
        t1 + Duration::minutes(5),
        2,
        sync_findings,
    )
    .await
    .expect("third run");
    assert_eq!((third.opened, third.resolved, third.open), (0, 0, 1));
}

/// A page parses each distinct properties text once per type: resources of other types
/// with the same text get their own type's projection, and resources that share a text
/// are still judged on their own tags and fields.
#[test]
fn shared_properties_text_is_parsed_per_type_and_judged_per_resource() {
    let cat = catalog();
    let props = json!({
        "encrypted": true,
        "IsMultiRegionTrail": false,
        "instanceState": {"name": "running"}
    });
    let resources = vec![
        res(ResourceType::AwsEc2Volume, "vol-a", &[], props.clone()),
        res(
            ResourceType::AwsCloudtrailTrail,
            "trail-b",
            &[],
            props.clone(),
        ),
        res(ResourceType::AwsEc2Volume, "vol-c", &[], props.clone()),
        res(
            ResourceType::AwsEc2Instance,
            "i-d",
            &[("Owner", "me")],
            props.clone(),
        ),
        res(ResourceType::AwsEc2Instance, "i-e", &[], props),
    ];
    let mut page = RawPage::default();
    for r in &resources {
        page.push_resource(r).expect("encodes");
    }
    let outcome = cat.evaluate_page(&page, now()).expect("evaluates");
    let got: Vec<(String, String)> = outcome
        .findings
        .iter()
        .map(|f| (f.resource.clone(), f.insight.0.clone()))
        .collect();
    let decoded: Vec<(String, String)> = resources
        .iter()
        .flat_map(|r| {
            cat.matching(r, now())
                .map(|i| (r.id.clone(), i.id.0.clone()))
        })
        .collect();
    assert_eq!(got, decoded);
    assert_eq!(
        got,
        [
            ("trail-b", "aws-cloudtrail-not-multi-region"),
            ("i-e", "aws-ec2-missing-owner-tag")
        ]
        .map(|(r, i)| (r.to_owned(), i.to_owned()))
    );
}

#[tokio::test]
async fn run_is_scoped_to_one_cloud() {
    let store = crate::store::open("sqlite::memory:")
        .await
        .expect("in-memory store opens");
    let cat = catalog();
    let mut other = res(
        ResourceType::AwsEc2Volume,
        "vol-x",
        &[],
        json!({"encrypted": "false"}),
    );
    other.cloud = CloudId("cloud-2".into());
    other.uid = ResourceUid::derive(&other.cloud, other.rtype, &other.region, &other.id);
    let mine = res(
        ResourceType::AwsEc2Volume,
        "vol-y",
        &[],
        json!({"encrypted": false}),
    );
    store
        .upsert_resources(vec![other, mine])
        .await
        .expect("upsert");
    let report = run_compliance(&*store, &cat, Some(&CloudId("cloud-1".into())), now(), 10)
        .await
        .expect("run");
    assert_eq!(report.evaluated, 1);
    assert_eq!(report.open, 1);
    let all = run_compliance(&*store, &cat, None, now() + Duration::hours(1), 10)
        .await
        .expect("run");
    assert_eq!(all.evaluated, 2);
    assert_eq!(all.open, 2);
    assert_eq!(all.resolved, 0);
}
