//! The store contract: checks every [`Store`] implementation must pass.
//!
//! Owns: one `pub async fn` per behaviour of the [`Store`] trait, each taking a
//! [`SharedStore`], and [`all`], which runs them in turn; plus the tests that run the suite
//! against the embedded SQLite store (a file and `sqlite::memory:`). The cluster's MySQL
//! store runs the same [`all`] so that the two backends can never drift.
//!
//! Must never: depend on a particular backend (backend-specific tests live beside the
//! backend), or rely on another check's data: every check works in its own cloud with its
//! own insight ids, and asserts on global figures only as differences.
//!
//! Times are whole seconds, which every backend stores exactly.

use super::*;

use palisade_proto::{Credentials, Provider};
use serde_json::json;

/// A point in time `secs` seconds after 2020-01-01T00:00:00Z.
pub fn at(secs: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(1_577_836_800 + secs, 0).expect("valid test time")
}

/// A fresh cloud id, unique to one check.
pub fn fresh_cloud(label: &str) -> CloudId {
    CloudId(format!("{label}-{}", uuid::Uuid::new_v4()))
}

/// A resource of `cloud` first and last seen at `seen`.
pub fn resource(
    cloud: &CloudId,
    rtype: ResourceType,
    region: &str,
    id: &str,
    tags: &[(&str, &str)],
    seen: Timestamp,
) -> Resource {
    Resource::harvested(
        cloud,
        "123456789012",
        region,
        rtype,
        id,
        format!("name-{id}"),
        tags.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        json!({"Id": id, "Region": region, "Nested": {"List": [1, "two", null, true]}}),
        seen,
    )
}

/// A cloud of AWS access keys whose secret is `secret`.
pub fn aws_keys(id: &CloudId, secret: &str) -> CloudAccount {
    CloudAccount {
        id: id.clone(),
        provider: Provider::Aws,
        name: "keys".into(),
        regions: vec!["us-east-1".into()],
        credentials: Credentials::Keys {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: secret.into(),
            session_token: None,
        },
        created_at: at(1),
    }
}

/// A finding of `insight` on `r`, seen at `seen`.
pub fn finding(insight: &InsightId, r: &Resource, seen: Timestamp) -> Finding {
    Finding {
        insight: insight.clone(),
        resource_uid: r.uid.clone(),
        resource: r.id.clone(),
        resource_type: r.rtype,
        region: r.region.clone(),
        cloud: r.cloud.clone(),
        state: FindingState::Open,
        first_seen: seen,
        last_seen: seen,
        resolved_at: None,
    }
}

fn fresh_insight(label: &str) -> InsightId {
    InsightId(format!("{label}-{}", uuid::Uuid::new_v4()))
}

fn everything(cloud: &CloudId) -> ResourceQuery {
    ResourceQuery {
        cloud: Some(cloud.clone()),
        include_deleted: true,
        limit: 1000,
        ..ResourceQuery::default()
    }
}

async fn get(store: &SharedStore, key: &str) -> Option<Resource> {
    store.get_resource(key).await.expect("get_resource")
}

/// Every live resource of one cloud, through keyset pages of `page`.
async fn scan_all(store: &SharedStore, query: &ScanQuery, page: usize) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
    loop {
        let after = out.last().map(|r| r.uid.clone());
        let batch = store
            .scan_resources(query, after.as_ref(), page)
            .await
            .expect("scan_resources");
        assert!(
            batch.len() <= page,
            "a scan page holds at most `limit` rows"
        );
        let done = batch.len() < page;
        out.extend(batch);
        if done {
            return out;
        }
    }
}

/// Run every check, in turn, against `store`. The store should start empty.
pub async fn all(store: SharedStore) {
    ping(store.clone()).await;
    clouds_round_trip(store.clone()).await;
    upsert_keeps_first_seen(store.clone()).await;
    deleted_resources_are_kept_and_come_back(store.clone()).await;
    listing_filters_pages_and_orders(store.clone()).await;
    tag_filters(store.clone()).await;
    lookup_by_uid_or_native_id(store.clone()).await;
    scan_walks_live_resources_by_uid(store.clone()).await;
    scan_raw_reads_what_scan_reads(store.clone()).await;
    counts_live_resources_by_type(store.clone()).await;
    findings_open_resolve_and_reopen(store.clone()).await;
    findings_listing_filters_and_pages(store.clone()).await;
    listings_sort_in_the_store(store.clone()).await;
    resolve_findings_of_every_cloud(store.clone()).await;
    delete_cloud_removes_its_resources_and_findings(store.clone()).await;
    sync_findings_writes_only_what_changed(store.clone()).await;
    sync_findings_respects_its_range_and_scope(store.clone()).await;
    users_are_created_once_and_listed(store.clone()).await;
    api_keys_are_found_by_hash_until_revoked(store.clone()).await;
    sessions_expire_and_end(store.clone()).await;
    audit_log_appends_and_pages_newest_first(store.clone()).await;
    stored_resources_read_as_resources_do(store.clone()).await;
    resource_totals_are_exact_right_after_writes(store.clone()).await;
    finding_totals_are_exact_right_after_writes(store.clone()).await;
    // last: it names the store's facts extractor for every later write
    scan_raw_with_facts_projects_as_properties_do(store.clone()).await;
}

/// The total of a listing of `cloud`'s resources, in pages of two (so that the total is
/// never implied by a last page), asked twice (the second may come from a count cache),
/// through both read paths, which must agree.
async fn resource_total(
    store: &SharedStore,
    cloud: &CloudId,
    rtype: Option<ResourceType>,
    include_deleted: bool,
) -> u64 {
    let query = ResourceQuery {
        cloud: Some(cloud.clone()),
        rtype,
        include_deleted,
        limit: 2,
        ..ResourceQuery::default()
    };
    let first = store.list_resources(&query).await.expect("list").total;
    let again = store
        .list_stored_resources(&query)
        .await
        .expect("list stored")
        .total;
    assert_eq!(first, again, "{query:?}: both read paths, one total");
    first
}

/// The stored-text read path answers what the decoded one does: each resource serialises
/// to the same JSON (its properties byte for byte as `serde_json` wrote them), decodes to
/// the resource stored, and one resource's findings are those its listing holds.
/// [`Store::list_resources_json`] of `q` is the page of [`Store::list_stored_resources`],
/// each resource serialised, joined by commas.
async fn json_page_is_the_stored_page(store: &SharedStore, q: &ResourceQuery) {
    let stored = store.list_stored_resources(q).await.expect("list stored");
    let page = store.list_resources_json(q).await.expect("list json");
    assert_eq!(page.total, stored.total, "{q:?}");
    assert_eq!(page.items, stored.items.len(), "{q:?}");
    let joined = stored
        .items
        .iter()
        .map(|r| serde_json::to_string(r).expect("encode"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(String::from_utf8_lossy(&page.json), joined, "{q:?}");
}

pub async fn stored_resources_read_as_resources_do(store: SharedStore) {
    let cloud = fresh_cloud("stored");
    let mut batch = Vec::new();
    for n in 0..5 {
        let tags: &[(&str, &str)] = match n {
            0 => &[],
            1 => &[("Owner", "ops"), ("café", "crème \"brûlée\"\n")],
            _ => &[("env", "prod")],
        };
        let mut r = resource(
            &cloud,
            ResourceType::AwsS3Bucket,
            "us-east-1",
            &format!("b-{n}"),
            tags,
            at(1),
        );
        if n == 1 {
            r.name = "quote \" backslash \\ newline \n bell \u{7} é 😀 </script>".into();
            r.properties = json!({"big": 12345678901234567u64, "neg": -7, "f": 0.1,
                "e": 1.5e300, "s": "tab\tquote\"é😀", "empty": {}, "list": [[], {}, null]});
        }
        batch.push(r);
    }
    store.upsert_resources(batch.clone()).await.expect("upsert");
    let query = ResourceQuery {
        cloud: Some(cloud.clone()),
        limit: 100,
        ..ResourceQuery::default()
    };
    let decoded = store.list_resources(&query).await.expect("list");
    let stored = store
        .list_stored_resources(&query)
        .await
        .expect("list stored");
    assert_eq!(stored.total, 5);
    assert_eq!(decoded.total, stored.total);
    assert_eq!(decoded.items.len(), stored.items.len());
    for (d, s) in decoded.items.iter().zip(&stored.items) {
        assert_eq!(
            serde_json::to_string(s).expect("encode stored"),
            serde_json::to_string(d).expect("encode decoded"),
            "{}: the same JSON",
            d.uid
        );
        let original = batch.iter().find(|r| r.uid == d.uid).expect("seeded");
        assert_eq!(
            s.properties.get(),
            serde_json::to_string(&original.properties).expect("encode"),
            "{}: properties as written",
            d.uid
        );
        assert_eq!(&s.clone().decode().expect("decode"), original);
    }
    // A listing whose filters fix the type or the region takes them from the query, not
    // the rows: the same resources, the same JSON.
    let encoded = |items: &[StoredResource]| serde_json::to_string(items).expect("encode");
    for (rtype, region) in [
        (Some(ResourceType::AwsS3Bucket), Some("us-east-1")),
        (Some(ResourceType::AwsS3Bucket), None),
        (None, Some("us-east-1")),
    ] {
        let fixed = ResourceQuery {
            rtype,
            region: region.map(str::to_owned),
            ..query.clone()
        };
        let page = store
            .list_stored_resources(&fixed)
            .await
            .expect("list fixed");
        assert_eq!(page.total, 5, "{fixed:?}");
        assert_eq!(encoded(&page.items), encoded(&stored.items), "{fixed:?}");
        json_page_is_the_stored_page(&store, &fixed).await;
    }
    json_page_is_the_stored_page(&store, &query).await;
    let deepest_first = ResourceQuery {
        order: ResourceOrder::Name,
        descending: true,
        limit: 2,
        offset: 1,
        ..query.clone()
    };
    json_page_is_the_stored_page(&store, &deepest_first).await;
    let one = &batch[1];
    for key in [one.uid.as_str(), one.id.as_str()] {
        let got = store
            .get_stored_resource(key)
            .await
            .expect("get stored")
            .expect("found");
        assert_eq!(got.uid, one.uid, "{key}");
        assert_eq!(&got.decode().expect("decode"), one, "{key}");
    }
    assert!(store
        .get_stored_resource("no-such-resource")
        .await
        .expect("get stored")
        .is_none());

    let insights = [fresh_insight("stored-a"), fresh_insight("stored-b")];
    store
        .upsert_findings(insights.iter().map(|i| finding(i, one, at(2))).collect())
        .await
        .expect("findings");
    let listed = store
        .list_findings(&FindingQuery {
            resource_uid: Some(one.uid.clone()),
            limit: 100,
            ..FindingQuery::default()
        })
        .await
        .expect("list findings");
    assert_eq!(listed.total, 2);
    assert_eq!(
        store
            .resource_findings(&one.uid, 100)
            .await
            .expect("resource findings"),
        listed.items
    );
    assert_eq!(
        store
            .resource_findings(&one.uid, 1)
            .await
            .expect("resource findings")
            .len(),
        1,
        "at most the limit"
    );
}

/// A resource listing's `total` is exact right after each write, however often the same
/// listing was answered before: inserts, a deletion sweep, a revival, a deleted cloud; and
/// a listing whose total its last page implies agrees with one that counts.
pub async fn resource_totals_are_exact_right_after_writes(store: SharedStore) {
    let cloud = fresh_cloud("totals");
    let instance = Some(ResourceType::AwsEc2Instance);
    let instances = |range: std::ops::Range<u32>, seen: i64| -> Vec<Resource> {
        range
            .map(|n| {
                resource(
                    &cloud,
                    ResourceType::AwsEc2Instance,
                    "us-east-1",
                    &format!("i-{n}"),
                    &[],
                    at(seen),
                )
            })
            .collect()
    };
    assert_eq!(resource_total(&store, &cloud, None, false).await, 0);
    store
        .upsert_resources(instances(0..5, 1))
        .await
        .expect("insert");
    assert_eq!(resource_total(&store, &cloud, None, false).await, 5);
    assert_eq!(resource_total(&store, &cloud, instance, false).await, 5);

    store
        .upsert_resources(instances(5..8, 1))
        .await
        .expect("insert more");
    assert_eq!(resource_total(&store, &cloud, None, false).await, 8);
    assert_eq!(resource_total(&store, &cloud, instance, false).await, 8);

    // a harvest at 10 sees two of them; the sweep marks the other six deleted
    store
        .upsert_resources(instances(0..2, 10))
        .await
        .expect("refresh");
    assert_eq!(resource_total(&store, &cloud, None, false).await, 8);
    let sweep = DeletionSweep {
        cloud: cloud.clone(),
        rtype: ResourceType::AwsEc2Instance,
        region: Some("us-east-1".into()),
        seen_before: at(5),
        now: at(11),
    };
    assert_eq!(store.mark_deleted(&sweep).await.expect("sweep"), 6);
    assert_eq!(resource_total(&store, &cloud, None, false).await, 2);
    assert_eq!(resource_total(&store, &cloud, instance, false).await, 2);
    assert_eq!(resource_total(&store, &cloud, None, true).await, 8);

    // a later harvest sees one of the deleted again
    store
        .upsert_resources(instances(6..7, 20))
        .await
        .expect("revive");
    assert_eq!(resource_total(&store, &cloud, None, false).await, 3);
    assert_eq!(resource_total(&store, &cloud, instance, false).await, 3);
    assert_eq!(resource_total(&store, &cloud, None, true).await, 8);

    // a last page implies the total, which a later count agrees with
    let whole = ResourceQuery {
        cloud: Some(cloud.clone()),
        limit: 100,
        ..ResourceQuery::default()
    };
    let last = store.list_stored_resources(&whole).await.expect("whole");
    assert_eq!((last.total, last.items.len()), (3, 3));
    let beyond = ResourceQuery {
        offset: 50,
        ..whole.clone()
    };
    let empty = store.list_stored_resources(&beyond).await.expect("beyond");
    assert_eq!((empty.total, empty.items.len()), (3, 0));

    // the cloud was never put: its resources go all the same
    store.delete_cloud(&cloud).await.expect("delete cloud");
    assert_eq!(resource_total(&store, &cloud, None, true).await, 0);
}

/// A finding listing's `total` is exact right after each write: findings opened, resolved,
/// reopened and synced, however often the same listing was answered before.
pub async fn finding_totals_are_exact_right_after_writes(store: SharedStore) {
    let cloud = fresh_cloud("finding-totals");
    let insight = fresh_insight("totals");
    let resources: Vec<Resource> = (0..4)
        .map(|n| {
            resource(
                &cloud,
                ResourceType::AwsS3Bucket,
                "us-east-1",
                &format!("b-{n}"),
                &[],
                at(1),
            )
        })
        .collect();
    store
        .upsert_resources(resources.clone())
        .await
        .expect("resources");
    let total = |state: Option<FindingState>| {
        let store = &store;
        let query = FindingQuery {
            insight: Some(insight.clone()),
            state,
            limit: 1,
            ..FindingQuery::default()
        };
        async move {
            let first = store.list_findings(&query).await.expect("list").total;
            let again = store.list_findings(&query).await.expect("list again").total;
            assert_eq!(first, again, "{query:?}");
            first
        }
    };
    assert_eq!(total(None).await, 0);
    store
        .upsert_findings(
            resources[..3]
                .iter()
                .map(|r| finding(&insight, r, at(2)))
                .collect(),
        )
        .await
        .expect("open three");
    assert_eq!(total(None).await, 3);
    assert_eq!(total(Some(FindingState::Open)).await, 3);

    // two are seen again later; the third is resolved
    store
        .upsert_findings(
            resources[..2]
                .iter()
                .map(|r| finding(&insight, r, at(10)))
                .collect(),
        )
        .await
        .expect("seen again");
    assert_eq!(
        store
            .resolve_findings(Some(&cloud), at(5), at(11))
            .await
            .expect("resolve"),
        1
    );
    assert_eq!(total(Some(FindingState::Open)).await, 2);
    assert_eq!(total(Some(FindingState::Resolved)).await, 1);
    assert_eq!(total(None).await, 3);

    // a compliance run over the cloud finds the fourth bucket and no longer the first
    let holding: Vec<Finding> = resources[1..]
        .iter()
        .map(|r| finding(&insight, r, at(20)))
        .collect();
    store
        .sync_findings(Some(&cloud), None, None, holding, at(20))
        .await
        .expect("sync");
    assert_eq!(total(Some(FindingState::Open)).await, 3);
    assert_eq!(total(Some(FindingState::Resolved)).await, 1);
    assert_eq!(total(None).await, 4);

    store.delete_cloud(&cloud).await.expect("delete cloud");
    assert_eq!(total(None).await, 0);
}

/// After [`Store::keep_facts`], a `scan_raw` that asks for the catalog's facts yields, for
/// every row, text that the catalog's projection parses exactly as it parses the stored
/// properties (whether the backend answers with facts or with the properties); one that
/// asks for another fingerprint, or for none, yields the properties themselves.
pub async fn scan_raw_with_facts_projects_as_properties_do(store: SharedStore) {
    use crate::compliance::{projection, Catalog};
    let settings = crate::settings::Settings::defaults().expect("embedded defaults");
    let catalog = Catalog::builtin(&settings.compliance).expect("built-in insights");
    store.keep_facts(catalog.facts());
    let cloud = fresh_cloud("facts");
    let mut batch = Vec::new();
    for n in 0..9 {
        let rtype = [
            ResourceType::AwsEc2SecurityGroup,
            ResourceType::AwsS3Bucket,
            ResourceType::AwsEc2Vpc,
        ][n % 3];
        let mut r = resource(&cloud, rtype, "us-east-1", &format!("f-{n}"), &[], at(1));
        r.properties = json!({
            "groupId": format!("sg-{n}"),
            "description": "x".repeat(200),
            "ipPermissions": [{"ipProtocol": "tcp", "fromPort": 22, "toPort": 22,
                               "ipRanges": [{"cidrIp": "0.0.0.0/0", "description": "ssh"}]}],
            "Acl": {"Grants": [{"Grantee": {"Type": "Group",
                     "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                     "Permission": "READ"}]},
            "Encryption": null,
            "n": n
        });
        batch.push(r);
    }
    store.upsert_resources(batch.clone()).await.expect("upsert");
    let by_uid: BTreeMap<&str, &Resource> = batch.iter().map(|r| (r.uid.as_str(), r)).collect();
    for (facts, projected) in [
        (Some(catalog.fingerprint()), true),
        (Some(catalog.fingerprint() ^ 1), false),
        (None, false),
    ] {
        let query = ScanQuery {
            cloud: Some(cloud.clone()),
            types: vec![],
            facts,
        };
        let page = store
            .scan_raw(&query, None, 100, RawPage::default())
            .await
            .expect("scan_raw");
        assert_eq!(page.len(), batch.len());
        for raw in page.iter() {
            let r = by_uid[raw.uid];
            let full = r.properties.to_string();
            if !projected {
                let props: serde_json::Value =
                    serde_json::from_str(raw.properties).expect("properties are json");
                assert_eq!(props, r.properties, "{facts:?} reads the properties");
                continue;
            }
            match catalog.projection(raw.rtype) {
                Some(p) => assert_eq!(
                    projection::parse(raw.properties, p).expect("facts parse"),
                    projection::parse(&full, p).expect("properties parse"),
                    "{}: facts project as the properties do",
                    raw.rtype
                ),
                // a type no insight reads: whatever is there is valid JSON
                None => {
                    serde_json::from_str::<serde_json::Value>(raw.properties).expect("json");
                }
            }
        }
    }
}

fn fresh_user(label: &str) -> String {
    format!(
        "{label}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn user(name: &str, role: crate::auth::Role) -> StoredUser {
    StoredUser {
        name: name.to_owned(),
        role,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt-of-{name}$hash"),
        created_at: at(5),
    }
}

fn api_key(id: &str, owner: &str, hash: &str) -> StoredApiKey {
    StoredApiKey {
        id: id.to_owned(),
        user: owner.to_owned(),
        name: format!("key \"{id}\" ünïcode"),
        hash: hash.to_owned(),
        created_at: at(10),
        last_used: None,
        revoked_at: None,
    }
}

/// A user is created once (a taken name changes nothing), read back exactly, and listed
/// by name.
pub async fn users_are_created_once_and_listed(store: SharedStore) {
    use crate::auth::Role;
    let a = fresh_user("b-user");
    let b = fresh_user("a-user");
    assert!(store
        .create_user(&user(&a, Role::Operator))
        .await
        .expect("create a"));
    assert!(store
        .create_user(&user(&b, Role::Viewer))
        .await
        .expect("create b"));
    let mut again = user(&a, Role::Admin);
    again.password_hash = "other".into();
    assert!(
        !store.create_user(&again).await.expect("create a again"),
        "a taken name is refused"
    );
    assert_eq!(
        store.get_user(&a).await.expect("get a"),
        Some(user(&a, Role::Operator)),
        "the first user stays as it was"
    );
    assert_eq!(
        store.get_user("no-such-user").await.expect("get none"),
        None
    );
    let listed: Vec<String> = store
        .list_users()
        .await
        .expect("list users")
        .into_iter()
        .map(|u| u.name)
        .filter(|n| *n == a || *n == b)
        .collect();
    assert_eq!(listed, vec![b.clone(), a.clone()], "by name");
}

/// A key is found by its hash, with its owner's role, until it is revoked; ids and hashes
/// are unique; touching records the latest use; listings are per user or of everyone.
pub async fn api_keys_are_found_by_hash_until_revoked(store: SharedStore) {
    use crate::auth::Role;
    let owner = fresh_user("key-owner");
    let other = fresh_user("key-other");
    store
        .create_user(&user(&owner, Role::Operator))
        .await
        .expect("owner");
    store
        .create_user(&user(&other, Role::Viewer))
        .await
        .expect("other");
    let id1 = crate::auth::token::random_id();
    let id2 = crate::auth::token::random_id();
    let h1 = crate::auth::token::hash_secret(&id1);
    let h2 = crate::auth::token::hash_secret(&id2);
    assert!(store
        .put_api_key(&api_key(&id1, &owner, &h1))
        .await
        .expect("put 1"));
    assert!(store
        .put_api_key(&api_key(&id2, &other, &h2))
        .await
        .expect("put 2"));
    assert!(
        !store
            .put_api_key(&api_key(&id1, &other, "f00"))
            .await
            .expect("same id"),
        "a taken id is refused"
    );
    assert!(
        !store
            .put_api_key(&api_key(&crate::auth::token::random_id(), &other, &h1))
            .await
            .expect("same hash"),
        "a taken hash is refused"
    );

    let (found, role) = store
        .find_api_key(&h1)
        .await
        .expect("find 1")
        .expect("key 1 is live");
    assert_eq!(found, api_key(&id1, &owner, &h1));
    assert_eq!(role, Role::Operator);
    assert_eq!(store.find_api_key("0000").await.expect("find none"), None);

    store.touch_api_key(&id1, at(30)).await.expect("touch");
    store
        .touch_api_key(&id1, at(20))
        .await
        .expect("touch older");
    let got = store.get_api_key(&id1).await.expect("get").expect("key 1");
    assert_eq!(got.last_used, Some(at(30)), "the latest use stays");

    let mine: Vec<String> = store
        .list_api_keys(Some(&owner))
        .await
        .expect("list mine")
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(mine, vec![id1.clone()]);
    let all: Vec<String> = store
        .list_api_keys(None)
        .await
        .expect("list all")
        .into_iter()
        .map(|k| k.id)
        .filter(|id| *id == id1 || *id == id2)
        .collect();
    assert_eq!(all.len(), 2);

    assert!(store.revoke_api_key(&id1, at(40)).await.expect("revoke"));
    assert!(!store
        .revoke_api_key(&id1, at(50))
        .await
        .expect("revoke again"));
    assert!(!store
        .revoke_api_key("nope", at(50))
        .await
        .expect("revoke none"));
    assert_eq!(store.find_api_key(&h1).await.expect("find revoked"), None);
    let revoked = store.get_api_key(&id1).await.expect("get").expect("kept");
    assert_eq!(
        revoked.revoked_at,
        Some(at(40)),
        "revoked keys are kept, marked"
    );
    assert!(store.find_api_key(&h2).await.expect("find 2").is_some());
}

/// A session is found by its hash until it expires or ends; purging removes only expired
/// ones.
pub async fn sessions_expire_and_end(store: SharedStore) {
    use crate::auth::Role;
    let name = fresh_user("session");
    store
        .create_user(&user(&name, Role::Admin))
        .await
        .expect("user");
    let session = |token: &str, expires: i64| StoredSession {
        hash: crate::auth::token::hash_secret(token),
        user: name.clone(),
        csrf_hash: crate::auth::token::hash_secret(&format!("csrf-{token}")),
        expires_at: at(expires),
    };
    let live = session(&fresh_user("t"), 1_000);
    let old = session(&fresh_user("t"), 100);
    store.put_session(&live).await.expect("put live");
    store.put_session(&old).await.expect("put old");
    assert_eq!(
        store.find_session(&live.hash, at(500)).await.expect("find"),
        Some((live.clone(), Role::Admin))
    );
    assert_eq!(
        store
            .find_session(&old.hash, at(500))
            .await
            .expect("find old"),
        None,
        "an expired session is not found"
    );
    assert_eq!(
        store
            .find_session(&live.hash, at(1_000))
            .await
            .expect("at expiry"),
        None,
        "a session ends at its expiry"
    );
    assert!(store.purge_sessions(at(500)).await.expect("purge") >= 1);
    assert!(!store.delete_session(&old.hash).await.expect("purged"));
    assert!(store
        .find_session(&live.hash, at(500))
        .await
        .expect("find")
        .is_some());
    assert!(store.delete_session(&live.hash).await.expect("delete"));
    assert_eq!(
        store.find_session(&live.hash, at(500)).await.expect("gone"),
        None
    );
}

/// Audit entries come back newest first with every field, paged with a total; overlong
/// client input is cut, not refused.
pub async fn audit_log_appends_and_pages_newest_first(store: SharedStore) {
    let who = fresh_user("auditor");
    let before = store.list_audit(1, 0).await.expect("list").total;
    let entry = |n: u16| AuditEntry {
        id: 0,
        at: at(i64::from(n)),
        principal: format!("{who} (key abc)"),
        action: "POST /v2/clouds/{id}/harvest".into(),
        target: format!("/v2/clouds/c-{n}/harvest"),
        client: "192.0.2.7".into(),
        status: 200 + n,
    };
    for n in 0..3 {
        store.append_audit(&entry(n)).await.expect("append");
    }
    let mut long = entry(3);
    long.target = format!("/v2/{}", "é".repeat(2_000));
    long.principal = "p".repeat(1_000);
    store
        .append_audit(&long)
        .await
        .expect("overlong fields are cut");

    let page = store.list_audit(3, 0).await.expect("list");
    assert_eq!(page.total, before + 4);
    assert_eq!(page.items.len(), 3);
    let newest = &page.items[0];
    assert_eq!(newest.target.chars().count(), AUDIT_TARGET_CHARS);
    assert_eq!(newest.principal.chars().count(), AUDIT_PRINCIPAL_CHARS);
    let mut second = page.items[1].clone();
    assert!(second.id < newest.id, "newest first");
    second.id = 0;
    assert_eq!(second, entry(2));
    let next = store.list_audit(3, 3).await.expect("second page");
    assert!(next.items.iter().all(|e| e.id < page.items[2].id));
    assert_eq!(
        next.items.first().map(|e| e.target.clone()),
        Some("/v2/clouds/c-0/harvest".to_string())
    );
}

/// `scan_raw` pages through the same live resources as `scan_resources`, in the same
/// order, with every field as stored: tags and properties as JSON text that parses to the
/// decoded values. A reused page holds only its own rows.
pub async fn scan_raw_reads_what_scan_reads(store: SharedStore) {
    let cloud = fresh_cloud("scan-raw");
    let mut batch = Vec::new();
    for n in 0..23 {
        let rtype = [ResourceType::AwsEc2Instance, ResourceType::AwsS3Bucket][n % 2];
        let mut r = resource(
            &cloud,
            rtype,
            ["us-east-1", "eu-west-1"][n % 2],
            &format!("raw-{n}"),
            &[("Owner", "team \"a\""), ("n", &n.to_string())],
            at(1),
        );
        r.properties = json!({"n": n, "text": "é \u{1F600} \\ \"q\"", "list": [{"k": n}]});
        batch.push(r);
    }
    let gone = resource(
        &cloud,
        ResourceType::AwsEc2Instance,
        "ap-south-1",
        "gone",
        &[],
        at(1),
    );
    batch.push(gone);
    store.upsert_resources(batch).await.expect("upsert");
    store
        .mark_deleted(&DeletionSweep {
            cloud: cloud.clone(),
            rtype: ResourceType::AwsEc2Instance,
            region: Some("ap-south-1".into()),
            seen_before: at(2),
            now: at(2),
        })
        .await
        .expect("mark_deleted");
    for (types, limit) in [
        (vec![], 4),
        (vec![ResourceType::AwsS3Bucket], 5),
        (vec![], 1000),
    ] {
        let query = ScanQuery {
            cloud: Some(cloud.clone()),
            types,
            facts: None,
        };
        let decoded = scan_all(&store, &query, limit).await;
        let mut seen = 0;
        let mut after: Option<ResourceUid> = None;
        let mut page = RawPage::default();
        loop {
            page = store
                .scan_raw(&query, after.as_ref(), limit, page)
                .await
                .expect("scan_raw");
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= limit);
            for raw in page.iter() {
                let r = &decoded[seen];
                seen += 1;
                assert_eq!(raw.uid, r.uid.as_str());
                assert_eq!(raw.cloud, r.cloud.as_str());
                assert_eq!(raw.provider, r.provider);
                assert_eq!(raw.account, r.account);
                assert_eq!(raw.region, r.region);
                assert_eq!(raw.rtype, r.rtype);
                assert_eq!(raw.id, r.id);
                assert_eq!(raw.name, r.name);
                let tags: BTreeMap<String, String> =
                    serde_json::from_str(raw.tags).expect("tags are json");
                assert_eq!(tags, r.tags);
                let props: serde_json::Value =
                    serde_json::from_str(raw.properties).expect("properties are json");
                assert_eq!(props, r.properties);
            }
            after = page.last_uid();
        }
        assert_eq!(seen, decoded.len());
        assert!(!decoded.is_empty());
        assert!(decoded.iter().all(|r| r.region != "ap-south-1"));
    }
}

/// `ping` answers on a working store.
pub async fn ping(store: SharedStore) {
    store.ping().await.expect("ping");
}

/// Clouds are stored with their credentials, replaced by id, listed and deleted.
pub async fn clouds_round_trip(store: SharedStore) {
    let id = fresh_cloud("clouds");
    let mut cloud = CloudAccount {
        id: id.clone(),
        provider: Provider::Aws,
        name: "production".into(),
        regions: vec!["us-east-1".into(), "eu-west-1".into()],
        credentials: Credentials::Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "s3cr3t".into(),
            session_token: Some("t0ken".into()),
        },
        created_at: at(10),
    };
    store.put_cloud(&cloud).await.expect("put_cloud");
    assert_eq!(
        store.get_cloud(&id).await.expect("get_cloud"),
        Some(cloud.clone())
    );

    cloud.name = "renamed".into();
    cloud.credentials = Credentials::AssumeRole {
        role_arn: "arn:aws:iam::123456789012:role/palisade".into(),
        external_id: Some("ext".into()),
    };
    store.put_cloud(&cloud).await.expect("put_cloud replaces");
    assert_eq!(
        store.get_cloud(&id).await.expect("get_cloud"),
        Some(cloud.clone())
    );
    let listed = store.list_clouds().await.expect("list_clouds");
    assert_eq!(
        listed.iter().filter(|c| c.id == id).collect::<Vec<_>>(),
        vec![&cloud],
        "a replaced cloud is listed once, as replaced"
    );

    let missing = fresh_cloud("missing");
    assert_eq!(store.get_cloud(&missing).await.expect("get_cloud"), None);
    assert!(store.delete_cloud(&id).await.expect("delete_cloud"));
    assert_eq!(store.get_cloud(&id).await.expect("get_cloud"), None);
    assert!(!store.delete_cloud(&id).await.expect("delete_cloud again"));
    assert!(!store
        .list_clouds()
        .await
        .expect("list_clouds")
        .iter()
        .any(|c| c.id == id));
}

/// A re-harvested resource keeps its `first_seen` and takes every other field anew.
pub async fn upsert_keeps_first_seen(store: SharedStore) {
    let cloud = fresh_cloud("upsert");
    let first = resource(
        &cloud,
        ResourceType::AwsEc2Instance,
        "us-east-1",
        "i-1",
        &[("a", "1")],
        at(100),
    );
    store
        .upsert_resources(vec![first.clone()])
        .await
        .expect("upsert");
    assert_eq!(
        get(&store, first.uid.as_str()).await,
        Some(first.clone()),
        "round trip"
    );

    let mut again = first.clone();
    again.first_seen = at(200);
    again.last_seen = at(200);
    again.name = "renamed".into();
    again.account = "210987654321".into();
    again.tags = [("b".to_string(), "2".to_string())].into();
    again.properties = json!({"State": "stopped"});
    store
        .upsert_resources(vec![again.clone()])
        .await
        .expect("upsert again");

    let stored = get(&store, first.uid.as_str()).await.expect("still there");
    let mut expected = again;
    expected.first_seen = at(100);
    assert_eq!(stored, expected);
    let page = store
        .list_resources(&everything(&cloud))
        .await
        .expect("list");
    assert_eq!(page.total, 1, "an upsert of a known uid adds no row");

    // An empty batch is fine and changes nothing.
    store
        .upsert_resources(Vec::new())
        .await
        .expect("empty batch");
    assert_eq!(
        store
            .list_resources(&everything(&cloud))
            .await
            .expect("list")
            .total,
        1
    );
}

/// A resource a harvest no longer sees is marked deleted, not dropped, only within the
/// swept (cloud, type, region); a later harvest that sees it again brings it back live
/// with its first `first_seen`.
pub async fn deleted_resources_are_kept_and_come_back(store: SharedStore) {
    let cloud = fresh_cloud("sweep");
    let other_cloud = fresh_cloud("sweep-other");
    let vol = ResourceType::AwsEc2Volume;
    let kept = resource(&cloud, vol, "us-east-1", "vol-kept", &[], at(100));
    let gone = resource(&cloud, vol, "us-east-1", "vol-gone", &[], at(100));
    let elsewhere = resource(&cloud, vol, "eu-west-1", "vol-eu", &[], at(100));
    let other_type = resource(
        &cloud,
        ResourceType::AwsEc2Vpc,
        "us-east-1",
        "vpc-1",
        &[],
        at(100),
    );
    let other_cloud_vol = resource(&other_cloud, vol, "us-east-1", "vol-gone", &[], at(100));
    store
        .upsert_resources(vec![
            kept.clone(),
            gone.clone(),
            elsewhere.clone(),
            other_type.clone(),
            other_cloud_vol.clone(),
        ])
        .await
        .expect("first harvest");

    // The second harvest of (cloud, volume, us-east-1) sees only `kept`.
    let mut kept2 = kept.clone();
    kept2.first_seen = at(200);
    kept2.last_seen = at(200);
    store
        .upsert_resources(vec![kept2])
        .await
        .expect("second harvest");
    let sweep = DeletionSweep {
        cloud: cloud.clone(),
        rtype: vol,
        region: Some("us-east-1".into()),
        seen_before: at(200),
        now: at(210),
    };
    assert_eq!(store.mark_deleted(&sweep).await.expect("mark_deleted"), 1);
    assert_eq!(
        store
            .mark_deleted(&sweep)
            .await
            .expect("mark_deleted again"),
        0,
        "a deleted resource is not counted twice"
    );

    let stored_gone = get(&store, gone.uid.as_str())
        .await
        .expect("kept, not dropped");
    assert_eq!(stored_gone.deleted_at, Some(at(210)));
    assert_eq!(stored_gone.last_seen, at(100));
    for untouched in [&kept, &elsewhere, &other_type, &other_cloud_vol] {
        let r = get(&store, untouched.uid.as_str()).await.expect("present");
        assert_eq!(r.deleted_at, None, "{} must stay live", r.id);
    }

    let live = store
        .list_resources(&ResourceQuery {
            cloud: Some(cloud.clone()),
            limit: 100,
            ..ResourceQuery::default()
        })
        .await
        .expect("list live");
    assert_eq!(live.total, 3);
    assert!(live.items.iter().all(|r| r.uid != gone.uid));
    let with_deleted = store
        .list_resources(&everything(&cloud))
        .await
        .expect("list all");
    assert_eq!(with_deleted.total, 4);
    assert!(with_deleted
        .items
        .iter()
        .any(|r| r.uid == gone.uid && r.deleted_at.is_some()));
    let scanned = scan_all(
        &store,
        &ScanQuery {
            cloud: Some(cloud.clone()),
            types: vec![],
            facts: None,
        },
        10,
    )
    .await;
    assert_eq!(scanned.len(), 3);
    assert!(
        scanned.iter().all(|r| r.uid != gone.uid),
        "scans skip deleted resources"
    );
    let counts = store
        .count_resources_by_type(Some(&cloud))
        .await
        .expect("count");
    assert_eq!(counts.get(&vol), Some(&2));

    // A sweep with no region covers every region of the type.
    let global_sweep = DeletionSweep {
        cloud: cloud.clone(),
        rtype: vol,
        region: None,
        seen_before: at(150),
        now: at(220),
    };
    assert_eq!(
        store
            .mark_deleted(&global_sweep)
            .await
            .expect("sweep all regions"),
        1,
        "only vol-eu: vol-kept was seen at 200"
    );
    assert_eq!(
        get(&store, elsewhere.uid.as_str())
            .await
            .expect("present")
            .deleted_at,
        Some(at(220))
    );

    // Harvested again: live, first_seen kept.
    let mut back = gone.clone();
    back.first_seen = at(300);
    back.last_seen = at(300);
    store
        .upsert_resources(vec![back])
        .await
        .expect("third harvest");
    let revived = get(&store, gone.uid.as_str()).await.expect("present");
    assert_eq!(revived.deleted_at, None);
    assert_eq!(revived.first_seen, at(100));
    assert_eq!(revived.last_seen, at(300));
}

/// Listings filter by cloud, type and region, are ordered by (type, region, id), and page
/// with a total that ignores the page.
pub async fn listing_filters_pages_and_orders(store: SharedStore) {
    let cloud = fresh_cloud("list");
    let noise = fresh_cloud("list-noise");
    let mut batch = Vec::new();
    for (i, rtype) in [ResourceType::AwsEc2Vpc, ResourceType::AwsEc2Instance]
        .into_iter()
        .enumerate()
    {
        for region in ["us-east-1", "eu-west-1"] {
            // ids in reverse to show the store sorts
            for n in (0..6 + i).rev() {
                batch.push(resource(
                    &cloud,
                    rtype,
                    region,
                    &format!("{region}-{n:02}"),
                    &[],
                    at(1),
                ));
            }
        }
    }
    batch.push(resource(
        &noise,
        ResourceType::AwsEc2Vpc,
        "us-east-1",
        "noise",
        &[],
        at(1),
    ));
    let total = batch.len() as u64 - 1; // 2*6 + 2*7 = 26
    store.upsert_resources(batch.clone()).await.expect("upsert");

    let mut expected: Vec<Resource> = batch.into_iter().filter(|r| r.cloud == cloud).collect();
    expected.sort_by(|a, b| {
        (a.rtype.as_str(), &a.region, &a.id).cmp(&(b.rtype.as_str(), &b.region, &b.id))
    });

    let mut paged = Vec::new();
    for offset in (0..total + 10).step_by(10) {
        let page = store
            .list_resources(&ResourceQuery {
                cloud: Some(cloud.clone()),
                limit: 10,
                offset,
                ..ResourceQuery::default()
            })
            .await
            .expect("list page");
        assert_eq!(page.total, total, "total at offset {offset}");
        assert_eq!(
            page.items.len() as u64,
            total.saturating_sub(offset).min(10),
            "items at offset {offset}"
        );
        paged.extend(page.items);
    }
    assert_eq!(paged, expected, "pages concatenate to the ordered listing");

    let only_total = store
        .list_resources(&ResourceQuery {
            cloud: Some(cloud.clone()),
            limit: 0,
            ..ResourceQuery::default()
        })
        .await
        .expect("limit 0");
    assert_eq!((only_total.total, only_total.items.len()), (total, 0));

    let by_type_region = store
        .list_resources(&ResourceQuery {
            cloud: Some(cloud.clone()),
            rtype: Some(ResourceType::AwsEc2Instance),
            region: Some("eu-west-1".into()),
            limit: 100,
            ..ResourceQuery::default()
        })
        .await
        .expect("filter");
    assert_eq!(by_type_region.total, 7);
    assert!(by_type_region
        .items
        .iter()
        .all(|r| r.rtype == ResourceType::AwsEc2Instance && r.region == "eu-west-1"));
    let ids: Vec<&str> = by_type_region.items.iter().map(|r| r.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);

    let by_region = store
        .list_resources(&ResourceQuery {
            cloud: Some(cloud.clone()),
            region: Some("us-east-1".into()),
            limit: 100,
            ..ResourceQuery::default()
        })
        .await
        .expect("filter region");
    assert_eq!(by_region.total, 13);

    let across_clouds = store
        .list_resources(&ResourceQuery {
            rtype: Some(ResourceType::AwsEc2Vpc),
            region: Some("us-east-1".into()),
            limit: 1000,
            ..ResourceQuery::default()
        })
        .await
        .expect("no cloud filter");
    assert!(across_clouds.items.iter().any(|r| r.cloud == noise));
    assert!(
        across_clouds
            .items
            .iter()
            .filter(|r| r.cloud == cloud)
            .count()
            == 6
    );
}

/// `tag` matches a key (`KEY`) or a key and value (`KEY=VALUE`, split at the first `=`).
pub async fn tag_filters(store: SharedStore) {
    let cloud = fresh_cloud("tags");
    let i = ResourceType::AwsEc2Instance;
    let batch = vec![
        resource(
            &cloud,
            i,
            "us-east-1",
            "i-owner-alice",
            &[("Owner", "alice"), ("env", "prod")],
            at(1),
        ),
        resource(
            &cloud,
            i,
            "us-east-1",
            "i-owner-bob",
            &[("Owner", "bob")],
            at(1),
        ),
        resource(
            &cloud,
            i,
            "us-east-1",
            "i-empty-owner",
            &[("Owner", "")],
            at(1),
        ),
        resource(&cloud, i, "us-east-1", "i-untagged", &[], at(1)),
        resource(
            &cloud,
            i,
            "us-east-1",
            "i-eq",
            &[("k", "a=b"), ("owner", "alice")],
            at(1),
        ),
        resource(
            &cloud,
            i,
            "us-east-1",
            "i-odd-key",
            &[("we\"ird.key $", "x")],
            at(1),
        ),
    ];
    store.upsert_resources(batch).await.expect("upsert");
    let ids = |tag: &str| {
        let store = store.clone();
        let cloud = cloud.clone();
        let tag = tag.to_string();
        async move {
            let page = store
                .list_resources(&ResourceQuery {
                    cloud: Some(cloud),
                    tag: Some(tag),
                    limit: 100,
                    ..ResourceQuery::default()
                })
                .await
                .expect("list by tag");
            let ids: Vec<String> = page.items.into_iter().map(|r| r.id).collect();
            assert_eq!(page.total as usize, ids.len());
            ids
        }
    };
    assert_eq!(
        ids("Owner").await,
        ["i-empty-owner", "i-owner-alice", "i-owner-bob"]
    );
    assert_eq!(
        ids("Owner=alice").await,
        ["i-owner-alice"],
        "keys are case-sensitive"
    );
    assert_eq!(ids("Owner=").await, ["i-empty-owner"]);
    assert_eq!(ids("k=a=b").await, ["i-eq"]);
    assert_eq!(ids("we\"ird.key $").await, ["i-odd-key"]);
    assert_eq!(ids("we\"ird.key $=x").await, ["i-odd-key"]);
    assert!(ids("Owner=carol").await.is_empty());
    assert!(ids("absent").await.is_empty());
}

/// `get_resource` takes a uid, or a native id when exactly one live resource has it.
pub async fn lookup_by_uid_or_native_id(store: SharedStore) {
    let cloud = fresh_cloud("lookup");
    let b = ResourceType::AwsS3Bucket;
    let unique_id = format!("bucket-{}", uuid::Uuid::new_v4());
    let shared_id = format!("shared-{}", uuid::Uuid::new_v4());
    let unique = resource(&cloud, b, "us-east-1", &unique_id, &[], at(1));
    let twin_a = resource(
        &cloud,
        ResourceType::AwsIamUser,
        "global",
        &shared_id,
        &[],
        at(1),
    );
    let twin_b = resource(
        &cloud,
        ResourceType::AwsEc2Vpc,
        "eu-west-1",
        &shared_id,
        &[],
        at(1),
    );
    store
        .upsert_resources(vec![unique.clone(), twin_a.clone(), twin_b.clone()])
        .await
        .expect("upsert");

    assert_eq!(get(&store, unique.uid.as_str()).await, Some(unique.clone()));
    assert_eq!(
        get(&store, &unique_id).await,
        Some(unique.clone()),
        "by native id"
    );
    assert_eq!(get(&store, twin_a.uid.as_str()).await, Some(twin_a.clone()));
    assert_eq!(get(&store, &shared_id).await, None, "ambiguous native id");
    assert_eq!(get(&store, "no-such-thing").await, None);

    // Once one twin is deleted, the native id names the live one; a deleted resource is
    // still found by uid.
    store
        .mark_deleted(&DeletionSweep {
            cloud: cloud.clone(),
            rtype: ResourceType::AwsEc2Vpc,
            region: Some("eu-west-1".into()),
            seen_before: at(2),
            now: at(3),
        })
        .await
        .expect("mark_deleted");
    assert_eq!(get(&store, &shared_id).await, Some(twin_a));
    let deleted = get(&store, twin_b.uid.as_str())
        .await
        .expect("deleted by uid");
    assert_eq!(deleted.deleted_at, Some(at(3)));
}

/// `scan_resources` pages live resources by uid: ordered, complete, no duplicates,
/// filtered by cloud and types.
pub async fn scan_walks_live_resources_by_uid(store: SharedStore) {
    let cloud = fresh_cloud("scan");
    let noise = fresh_cloud("scan-noise");
    let types = [
        ResourceType::AwsEc2Instance,
        ResourceType::AwsEc2Volume,
        ResourceType::AwsKmsKey,
    ];
    let mut batch = Vec::new();
    for n in 0..57 {
        let rtype = types[n % types.len()];
        batch.push(resource(
            &cloud,
            rtype,
            "us-east-1",
            &format!("r-{n}"),
            &[],
            at(1),
        ));
    }
    for n in 0..5 {
        batch.push(resource(
            &noise,
            ResourceType::AwsEc2Instance,
            "us-east-1",
            &format!("n-{n}"),
            &[],
            at(1),
        ));
    }
    // Two deleted ones (a volume and a key, in a region of their own).
    batch.push(resource(
        &cloud,
        ResourceType::AwsEc2Volume,
        "ap-south-1",
        "gone-1",
        &[],
        at(1),
    ));
    batch.push(resource(
        &cloud,
        ResourceType::AwsKmsKey,
        "ap-south-1",
        "gone-2",
        &[],
        at(1),
    ));
    store.upsert_resources(batch.clone()).await.expect("upsert");
    for rtype in [ResourceType::AwsEc2Volume, ResourceType::AwsKmsKey] {
        let n = store
            .mark_deleted(&DeletionSweep {
                cloud: cloud.clone(),
                rtype,
                region: Some("ap-south-1".into()),
                seen_before: at(2),
                now: at(2),
            })
            .await
            .expect("mark_deleted");
        assert_eq!(n, 1);
    }

    let mut expected: Vec<Resource> = batch
        .iter()
        .filter(|r| r.cloud == cloud && r.region != "ap-south-1")
        .cloned()
        .collect();
    expected.sort_by(|a, b| a.uid.cmp(&b.uid));

    for page in [1, 7, 57, 1000] {
        let query = ScanQuery {
            cloud: Some(cloud.clone()),
            types: vec![],
            facts: None,
        };
        assert_eq!(
            scan_all(&store, &query, page).await,
            expected,
            "page size {page}"
        );
    }

    let query = ScanQuery {
        cloud: Some(cloud.clone()),
        types: vec![ResourceType::AwsEc2Volume, ResourceType::AwsKmsKey],
        facts: None,
    };
    let some_types = scan_all(&store, &query, 5).await;
    let want: Vec<&Resource> = expected
        .iter()
        .filter(|r| r.rtype != ResourceType::AwsEc2Instance)
        .collect();
    assert_eq!(some_types.iter().collect::<Vec<_>>(), want);
    assert_eq!(want.len(), 38);

    // The first page after the last uid is empty; a zero limit reads nothing.
    let last = expected
        .last()
        .map(|r| r.uid.clone())
        .expect("some resources");
    let q = ScanQuery {
        cloud: Some(cloud.clone()),
        types: vec![],
        facts: None,
    };
    assert!(store
        .scan_resources(&q, Some(&last), 10)
        .await
        .expect("scan")
        .is_empty());
    assert!(store
        .scan_resources(&q, None, 0)
        .await
        .expect("scan")
        .is_empty());

    // No cloud filter: both clouds, still in uid order.
    let everyone = scan_all(&store, &ScanQuery::default(), 13).await;
    assert!(
        everyone.windows(2).all(|w| w[0].uid < w[1].uid),
        "strictly by uid"
    );
    assert_eq!(everyone.iter().filter(|r| r.cloud == cloud).count(), 57);
    assert_eq!(everyone.iter().filter(|r| r.cloud == noise).count(), 5);
}

/// Live resources are counted per type, for one cloud or all.
pub async fn counts_live_resources_by_type(store: SharedStore) {
    let before = store
        .count_resources_by_type(None)
        .await
        .expect("count all");
    let cloud = fresh_cloud("counts");
    let mut batch = Vec::new();
    for n in 0..4 {
        batch.push(resource(
            &cloud,
            ResourceType::AwsIamUser,
            "global",
            &format!("u{n}"),
            &[],
            at(1),
        ));
    }
    for n in 0..3 {
        batch.push(resource(
            &cloud,
            ResourceType::AwsRdsDbInstance,
            "us-east-1",
            &format!("db{n}"),
            &[],
            at(1),
        ));
    }
    batch.push(resource(
        &cloud,
        ResourceType::AwsRdsDbInstance,
        "eu-west-1",
        "db-gone",
        &[],
        at(1),
    ));
    store.upsert_resources(batch).await.expect("upsert");
    store
        .mark_deleted(&DeletionSweep {
            cloud: cloud.clone(),
            rtype: ResourceType::AwsRdsDbInstance,
            region: Some("eu-west-1".into()),
            seen_before: at(2),
            now: at(2),
        })
        .await
        .expect("mark_deleted");

    let mine = store
        .count_resources_by_type(Some(&cloud))
        .await
        .expect("count cloud");
    let want: BTreeMap<ResourceType, u64> = [
        (ResourceType::AwsIamUser, 4),
        (ResourceType::AwsRdsDbInstance, 3),
    ]
    .into();
    assert_eq!(mine, want);
    assert!(store
        .count_resources_by_type(Some(&fresh_cloud("nobody")))
        .await
        .expect("count empty")
        .is_empty());

    let after = store
        .count_resources_by_type(None)
        .await
        .expect("count all");
    for (rtype, n) in want {
        assert_eq!(
            after.get(&rtype).copied().unwrap_or(0),
            before.get(&rtype).copied().unwrap_or(0) + n,
            "{rtype}"
        );
    }
}

/// Findings open with `first_seen`, are resolved when not seen since, and reopen when
/// seen again, keeping `first_seen`.
pub async fn findings_open_resolve_and_reopen(store: SharedStore) {
    let cloud = fresh_cloud("findings");
    let other = fresh_cloud("findings-other");
    let insight = fresh_insight("aws-test-insight");
    let sg = ResourceType::AwsEc2SecurityGroup;
    let r1 = resource(&cloud, sg, "us-east-1", "sg-1", &[], at(1));
    let r2 = resource(&cloud, sg, "us-east-1", "sg-2", &[], at(1));
    let r3 = resource(&other, sg, "us-east-1", "sg-3", &[], at(1));
    let mut f1 = finding(&insight, &r1, at(100));
    // Whatever state a caller hands in, an upserted finding holds now: it is open.
    f1.state = FindingState::Resolved;
    f1.resolved_at = Some(at(50));
    let f2 = finding(&insight, &r2, at(100));
    let f3 = finding(&insight, &r3, at(100));
    store
        .upsert_findings(vec![f1.clone(), f2.clone(), f3.clone()])
        .await
        .expect("upsert findings");
    let open = store.count_open_findings().await.expect("count open");
    assert_eq!(open.get(&insight), Some(&3));

    let by_uid = |uid: &ResourceUid| FindingQuery {
        insight: Some(insight.clone()),
        resource_uid: Some(uid.clone()),
        limit: 10,
        ..FindingQuery::default()
    };
    let stored = store.list_findings(&by_uid(&r1.uid)).await.expect("list");
    assert_eq!(stored.total, 1);
    let mut want1 = f1.clone();
    want1.state = FindingState::Open;
    want1.resolved_at = None;
    assert_eq!(stored.items, vec![want1]);

    // The next evaluation (at 200) still sees f1 only, in `cloud`.
    let mut f1_again = f1.clone();
    f1_again.first_seen = at(200);
    f1_again.last_seen = at(200);
    store
        .upsert_findings(vec![f1_again])
        .await
        .expect("upsert again");
    let resolved = store
        .resolve_findings(Some(&cloud), at(200), at(205))
        .await
        .expect("resolve");
    assert_eq!(resolved, 1, "only f2: f3 is in another cloud");
    assert_eq!(
        store
            .resolve_findings(Some(&cloud), at(200), at(206))
            .await
            .expect("resolve again"),
        0,
        "a resolved finding is not resolved twice"
    );

    let f2_now = store
        .list_findings(&by_uid(&r2.uid))
        .await
        .expect("list")
        .items;
    assert_eq!(f2_now.len(), 1);
    assert_eq!(f2_now[0].state, FindingState::Resolved);
    assert_eq!(f2_now[0].resolved_at, Some(at(205)));
    assert_eq!(f2_now[0].last_seen, at(100));
    let f1_now = &store
        .list_findings(&by_uid(&r1.uid))
        .await
        .expect("list")
        .items[0];
    assert_eq!(
        (f1_now.state, f1_now.first_seen, f1_now.last_seen),
        (FindingState::Open, at(100), at(200))
    );
    let f3_now = &store
        .list_findings(&by_uid(&r3.uid))
        .await
        .expect("list")
        .items[0];
    assert_eq!(f3_now.state, FindingState::Open);
    assert_eq!(
        store
            .count_open_findings()
            .await
            .expect("count")
            .get(&insight),
        Some(&2)
    );

    // Seen again at 300: reopened, first_seen kept.
    let mut f2_back = f2.clone();
    f2_back.first_seen = at(300);
    f2_back.last_seen = at(300);
    store.upsert_findings(vec![f2_back]).await.expect("reopen");
    let f2_back = &store
        .list_findings(&by_uid(&r2.uid))
        .await
        .expect("list")
        .items[0];
    assert_eq!(f2_back.state, FindingState::Open);
    assert_eq!(f2_back.resolved_at, None);
    assert_eq!((f2_back.first_seen, f2_back.last_seen), (at(100), at(300)));
    assert_eq!(
        store
            .count_open_findings()
            .await
            .expect("count")
            .get(&insight),
        Some(&3)
    );

    // When nothing is open any more, the insight drops out of the open counts.
    store
        .upsert_findings(Vec::new())
        .await
        .expect("empty batch");
    for c in [&cloud, &other] {
        store
            .resolve_findings(Some(c), at(1000), at(1000))
            .await
            .expect("resolve all");
    }
    assert_eq!(
        store
            .count_open_findings()
            .await
            .expect("count")
            .get(&insight),
        None
    );
}

/// Finding listings filter by insight, resource, cloud and state, and page with a total.
pub async fn findings_listing_filters_and_pages(store: SharedStore) {
    let cloud = fresh_cloud("flist");
    let a = fresh_insight("aws-a");
    let b = fresh_insight("aws-b");
    let mut resources = Vec::new();
    let mut findings = Vec::new();
    for n in 0..12 {
        let r = resource(
            &cloud,
            ResourceType::AwsEc2Volume,
            "us-east-1",
            &format!("vol-{n}"),
            &[],
            at(1),
        );
        findings.push(finding(&a, &r, at(10)));
        if n % 3 == 0 {
            findings.push(finding(&b, &r, if n == 0 { at(5) } else { at(10) }));
        }
        resources.push(r);
    }
    store
        .upsert_findings(findings.clone())
        .await
        .expect("upsert");
    // b's finding on vol-0, last seen at 5, is resolved.
    assert_eq!(
        store
            .resolve_findings(Some(&cloud), at(6), at(7))
            .await
            .expect("resolve"),
        1
    );

    let mut paged = Vec::new();
    for offset in [0, 5, 10, 15] {
        let page = store
            .list_findings(&FindingQuery {
                insight: Some(a.clone()),
                limit: 5,
                offset,
                ..FindingQuery::default()
            })
            .await
            .expect("page");
        assert_eq!(page.total, 12);
        paged.extend(page.items);
    }
    assert_eq!(paged.len(), 12);
    let mut uids: Vec<&ResourceUid> = paged.iter().map(|f| &f.resource_uid).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 12, "pages neither repeat nor skip");

    let in_cloud = store
        .list_findings(&FindingQuery {
            cloud: Some(cloud.clone()),
            limit: 100,
            ..FindingQuery::default()
        })
        .await
        .expect("by cloud");
    assert_eq!(in_cloud.total, 16);
    let open_b = store
        .list_findings(&FindingQuery {
            insight: Some(b.clone()),
            state: Some(FindingState::Open),
            limit: 100,
            ..FindingQuery::default()
        })
        .await
        .expect("open b");
    assert_eq!(open_b.total, 3);
    let resolved_in_cloud = store
        .list_findings(&FindingQuery {
            cloud: Some(cloud.clone()),
            state: Some(FindingState::Resolved),
            limit: 100,
            ..FindingQuery::default()
        })
        .await
        .expect("resolved");
    assert_eq!(resolved_in_cloud.total, 1);
    assert_eq!(resolved_in_cloud.items[0].insight, b);
    assert_eq!(resolved_in_cloud.items[0].resource, "vol-0");
    let of_resource = store
        .list_findings(&FindingQuery {
            resource_uid: Some(resources[3].uid.clone()),
            limit: 100,
            ..FindingQuery::default()
        })
        .await
        .expect("by resource");
    let insights: Vec<&InsightId> = of_resource.items.iter().map(|f| &f.insight).collect();
    assert_eq!(of_resource.total, 2);
    assert!(insights.contains(&&a) && insights.contains(&&b));
    let only_total = store
        .list_findings(&FindingQuery {
            insight: Some(a.clone()),
            limit: 0,
            ..FindingQuery::default()
        })
        .await
        .expect("limit 0");
    assert_eq!((only_total.total, only_total.items.len()), (12, 0));
}

/// A sort key as text: times zero-padded so that text order is time order.
fn time_key(t: Timestamp) -> String {
    format!("{:020}", t.timestamp_millis())
}

/// Every resource order and finding order, ascending and descending, paged: the pages
/// concatenate to the listing sorted by that order's columns (strings byte-wise, the key
/// last), on every backend alike.
pub async fn listings_sort_in_the_store(store: SharedStore) {
    let cloud = fresh_cloud("sort");
    let insight = fresh_insight("aws-sort");
    // names in byte order are neither id order nor seen order; case and accents sort
    // byte-wise on every backend
    let names = [
        "Zeta",
        "alpha",
        "\u{c9}mile",
        "beta",
        "alpha",
        "Beta",
        "zz",
        "_x",
    ];
    let mut batch = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let n = n as i64;
        let (rtype, region) = match n % 3 {
            0 => (ResourceType::AwsEc2Vpc, "us-east-1"),
            1 => (ResourceType::AwsEc2Instance, "eu-west-1"),
            _ => (ResourceType::AwsEc2Instance, "us-east-1"),
        };
        let mut r = resource(&cloud, rtype, region, &format!("r-{}", 7 - n), &[], at(0));
        r.name = (*name).to_string();
        r.first_seen = at((n * 5) % 8);
        r.last_seen = at(10 + (n * 3) % 8);
        batch.push(r);
    }
    store.upsert_resources(batch.clone()).await.expect("upsert");

    let stored = store
        .list_resources(&everything(&cloud))
        .await
        .expect("everything")
        .items;
    assert_eq!(stored.len(), names.len());
    let orders = [
        ResourceOrder::Type,
        ResourceOrder::Region,
        ResourceOrder::Cloud,
        ResourceOrder::Id,
        ResourceOrder::Name,
        ResourceOrder::Uid,
        ResourceOrder::FirstSeen,
        ResourceOrder::LastSeen,
    ];
    for order in orders {
        let key = |r: &Resource| -> Vec<String> {
            let t = r.rtype.as_str().to_string();
            let (reg, id, uid) = (r.region.clone(), r.id.clone(), r.uid.0.clone());
            match order {
                ResourceOrder::Type | ResourceOrder::Cloud => vec![t, reg, id, uid],
                ResourceOrder::Region => vec![reg, t, id, uid],
                ResourceOrder::Id => vec![id, uid],
                ResourceOrder::Name => vec![r.name.clone(), uid],
                ResourceOrder::Uid => vec![uid],
                ResourceOrder::FirstSeen => vec![time_key(r.first_seen), uid],
                ResourceOrder::LastSeen => vec![time_key(r.last_seen), uid],
            }
        };
        for descending in [false, true] {
            let mut expected = stored.clone();
            expected.sort_by_key(key);
            if descending {
                expected.reverse();
            }
            let mut paged = Vec::new();
            for offset in (0..names.len() as u64).step_by(3) {
                let page = store
                    .list_resources(&ResourceQuery {
                        cloud: Some(cloud.clone()),
                        order,
                        descending,
                        limit: 3,
                        offset,
                        ..ResourceQuery::default()
                    })
                    .await
                    .expect("sorted page");
                assert_eq!(page.total, names.len() as u64);
                paged.extend(page.items);
            }
            let got: Vec<&str> = paged.iter().map(|r| r.uid.as_str()).collect();
            let want: Vec<&str> = expected.iter().map(|r| r.uid.as_str()).collect();
            assert_eq!(got, want, "resources by {order:?}, descending {descending}");
        }
    }
    // a filter that fixes the order's leading column keeps the order
    let by_type = store
        .list_resources(&ResourceQuery {
            cloud: Some(cloud.clone()),
            rtype: Some(ResourceType::AwsEc2Instance),
            descending: true,
            limit: 100,
            ..ResourceQuery::default()
        })
        .await
        .expect("one type, descending");
    let ids: Vec<(&str, &str)> = by_type
        .items
        .iter()
        .map(|r| (r.region.as_str(), r.id.as_str()))
        .collect();
    let mut want = ids.clone();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, want);

    // findings: open and resolved, at different times, over several regions and types
    let mut findings = Vec::new();
    for (n, r) in batch.iter().enumerate() {
        let mut f = finding(&insight, r, at(20 + (n as i64 * 7) % 8));
        f.first_seen = at(20 - (n as i64 % 4));
        findings.push(f);
    }
    store
        .upsert_findings(findings)
        .await
        .expect("upsert findings");
    // the findings last seen before 23 are resolved
    store
        .resolve_findings(Some(&cloud), at(23), at(40))
        .await
        .expect("resolve");
    let all_findings = FindingQuery {
        insight: Some(insight.clone()),
        limit: 100,
        ..FindingQuery::default()
    };
    let stored = store
        .list_findings(&all_findings)
        .await
        .expect("findings")
        .items;
    assert_eq!(stored.len(), names.len());
    assert!(stored.iter().any(|f| f.state == FindingState::Resolved));
    assert!(stored.iter().any(|f| f.state == FindingState::Open));
    for order in [
        FindingOrder::Insight,
        FindingOrder::Resource,
        FindingOrder::ResourceType,
        FindingOrder::Region,
        FindingOrder::State,
        FindingOrder::FirstSeen,
        FindingOrder::LastSeen,
    ] {
        let key = |f: &Finding| -> Vec<String> {
            let lead = match order {
                FindingOrder::Insight => String::new(),
                FindingOrder::Resource => f.resource.clone(),
                FindingOrder::ResourceType => f.resource_type.as_str().to_string(),
                FindingOrder::Region => f.region.clone(),
                FindingOrder::State => f.state.as_str().to_string(),
                FindingOrder::FirstSeen => time_key(f.first_seen),
                FindingOrder::LastSeen => time_key(f.last_seen),
            };
            vec![lead, f.insight.0.clone(), f.resource_uid.0.clone()]
        };
        for descending in [false, true] {
            let mut expected = stored.clone();
            expected.sort_by_key(key);
            if descending {
                expected.reverse();
            }
            let mut paged = Vec::new();
            for offset in (0..names.len() as u64).step_by(3) {
                let page = store
                    .list_findings(&FindingQuery {
                        order,
                        descending,
                        limit: 3,
                        offset,
                        ..all_findings.clone()
                    })
                    .await
                    .expect("sorted findings");
                assert_eq!(page.total, names.len() as u64);
                paged.extend(page.items);
            }
            assert_eq!(
                paged, expected,
                "findings by {order:?}, descending {descending}"
            );
        }
    }
}

/// `resolve_findings` with no cloud resolves every cloud's stale findings.
/// Uses times before every other check's, so it resolves nothing of theirs.
pub async fn resolve_findings_of_every_cloud(store: SharedStore) {
    let early = |secs: i64| at(-1_000_000 + secs);
    let insight = fresh_insight("aws-everywhere");
    let c1 = fresh_cloud("resolve-1");
    let c2 = fresh_cloud("resolve-2");
    let r1 = resource(
        &c1,
        ResourceType::AwsKmsKey,
        "us-east-1",
        "k1",
        &[],
        early(0),
    );
    let r2 = resource(
        &c2,
        ResourceType::AwsKmsKey,
        "us-east-1",
        "k2",
        &[],
        early(0),
    );
    let r3 = resource(
        &c2,
        ResourceType::AwsKmsKey,
        "us-east-1",
        "k3",
        &[],
        early(0),
    );
    store
        .upsert_findings(vec![
            finding(&insight, &r1, early(10)),
            finding(&insight, &r2, early(10)),
            finding(&insight, &r3, early(20)),
        ])
        .await
        .expect("upsert");
    let n = store
        .resolve_findings(None, early(15), early(30))
        .await
        .expect("resolve everywhere");
    assert_eq!(n, 2);
    let open = store
        .list_findings(&FindingQuery {
            insight: Some(insight.clone()),
            state: Some(FindingState::Open),
            limit: 10,
            ..FindingQuery::default()
        })
        .await
        .expect("open");
    assert_eq!(open.total, 1);
    assert_eq!(open.items[0].resource_uid, r3.uid);
}

/// Deleting a cloud removes its resources and findings, and nothing of another cloud.
pub async fn delete_cloud_removes_its_resources_and_findings(store: SharedStore) {
    let insight = fresh_insight("aws-del");
    let mut per_cloud = Vec::new();
    for label in ["doomed", "spared"] {
        let id = fresh_cloud(label);
        store
            .put_cloud(&CloudAccount {
                id: id.clone(),
                provider: Provider::Aws,
                name: label.into(),
                regions: vec!["us-east-1".into()],
                credentials: Credentials::Default,
                created_at: at(1),
            })
            .await
            .expect("put_cloud");
        let rs: Vec<Resource> = (0..3)
            .map(|n| {
                resource(
                    &id,
                    ResourceType::AwsEc2Instance,
                    "us-east-1",
                    &format!("{label}-{n}"),
                    &[],
                    at(1),
                )
            })
            .collect();
        store.upsert_resources(rs.clone()).await.expect("upsert");
        store
            .upsert_findings(rs.iter().map(|r| finding(&insight, r, at(1))).collect())
            .await
            .expect("findings");
        per_cloud.push((id, rs));
    }
    let (doomed, doomed_rs) = &per_cloud[0];
    let (spared, spared_rs) = &per_cloud[1];

    assert!(store.delete_cloud(doomed).await.expect("delete"));
    assert_eq!(store.get_cloud(doomed).await.expect("get"), None);
    assert_eq!(
        store
            .list_resources(&everything(doomed))
            .await
            .expect("list")
            .total,
        0
    );
    assert_eq!(get(&store, doomed_rs[0].uid.as_str()).await, None);
    let scan = ScanQuery {
        cloud: Some(doomed.clone()),
        types: vec![],
        facts: None,
    };
    assert!(store
        .scan_resources(&scan, None, 10)
        .await
        .expect("scan")
        .is_empty());
    let fq = |c: &CloudId| FindingQuery {
        cloud: Some(c.clone()),
        limit: 10,
        ..FindingQuery::default()
    };
    assert_eq!(
        store
            .list_findings(&fq(doomed))
            .await
            .expect("findings")
            .total,
        0
    );
    assert_eq!(
        store
            .count_open_findings()
            .await
            .expect("count")
            .get(&insight),
        Some(&3)
    );

    assert!(store.get_cloud(spared).await.expect("get").is_some());
    assert_eq!(
        store
            .list_resources(&everything(spared))
            .await
            .expect("list")
            .total,
        3
    );
    assert_eq!(
        get(&store, spared_rs[0].uid.as_str()).await,
        Some(spared_rs[0].clone())
    );
    assert_eq!(
        store
            .list_findings(&fq(spared))
            .await
            .expect("findings")
            .total,
        3
    );

    assert!(!store.delete_cloud(doomed).await.expect("delete again"));
}

/// A store keeps its data across close and reopen of the same url.
/// A store opened again with the key it was written with reads everything back, cloud
/// credentials included; opened with another key, it refuses to open; opened with an
/// ephemeral key (as tests and `palisade migrate` do), it opens, and the credentials it
/// cannot read are reported as corrupt, naming the cloud.
pub async fn reopen_keeps_data(url: &str) {
    use crate::crypto::{CredentialsCipher, CredentialsKey, KeyOrigin};
    let key = CredentialsKey::random();
    let cipher = || Arc::new(CredentialsCipher::new(&key, KeyOrigin::Configured));
    let cloud = fresh_cloud("reopen");
    let r = resource(
        &cloud,
        ResourceType::AwsCloudtrailTrail,
        "us-east-1",
        "arn:aws:cloudtrail:us-east-1:123456789012:trail/t",
        &[("k", "v")],
        at(5),
    );
    let insight = fresh_insight("aws-reopen");
    let account = CloudAccount {
        id: cloud.clone(),
        provider: Provider::Aws,
        name: "kept".into(),
        regions: vec!["us-east-1".into()],
        credentials: Credentials::Keys {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        },
        created_at: at(1),
    };
    {
        let store = open_with(url, cipher()).await.expect("open");
        store.put_cloud(&account).await.expect("put_cloud");
        store
            .upsert_resources(vec![r.clone()])
            .await
            .expect("upsert");
        store
            .upsert_findings(vec![finding(&insight, &r, at(5))])
            .await
            .expect("findings");
    }
    match open_with(url, Arc::new(CredentialsCipher::ephemeral())).await {
        Ok(store) => {
            let err = store.get_cloud(&cloud).await.expect_err("another key");
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
            assert!(err.to_string().contains(cloud.as_str()), "{err}");
            assert!(!format!("{err} {err:?}").contains("secret"), "{err:?}");
        }
        Err(e) => panic!("an ephemeral key opens the store without checking: {e}"),
    }
    let other = CredentialsCipher::new(&CredentialsKey::random(), KeyOrigin::Configured);
    match open_with(url, Arc::new(other)).await {
        Err(StoreError::CredentialsKey(msg)) => {
            assert!(msg.contains("not the key that sealed them"), "{msg}");
        }
        Err(e) => panic!("expected CredentialsKey, got {e:?}"),
        Ok(_) => panic!("a key that opens no stored credentials must be refused"),
    }
    let store = open_with(url, cipher()).await.expect("reopen");
    assert_eq!(
        store.get_cloud(&cloud).await.expect("get_cloud"),
        Some(account)
    );
    assert_eq!(get(&store, r.uid.as_str()).await, Some(r));
    assert_eq!(
        store
            .count_open_findings()
            .await
            .expect("count")
            .get(&insight),
        Some(&1)
    );
}

/// The one finding of `insight` on `r`, as listed.
async fn finding_on(store: &SharedStore, insight: &InsightId, r: &Resource) -> Finding {
    let mut page = store
        .list_findings(&FindingQuery {
            insight: Some(insight.clone()),
            resource_uid: Some(r.uid.clone()),
            limit: 10,
            ..FindingQuery::default()
        })
        .await
        .expect("list findings");
    assert_eq!(page.items.len(), 1, "one finding of {insight} on {}", r.id);
    page.items.remove(0)
}

/// A uid range `(after, through]` that holds `r`'s uid and, in practice, no other: `after`
/// is the uid without its last hex digit.
fn just(r: &Resource) -> (ResourceUid, ResourceUid) {
    let uid = r.uid.as_str();
    (ResourceUid(uid[..uid.len() - 1].to_owned()), r.uid.clone())
}

/// `sync_findings` over a run's pages: opens what is new, resolves what no longer holds
/// (and, past the last page, what belongs to vanished resources), leaves the rest alone,
/// keeps `first_seen` on reopening, and reports `last_seen` of an open finding as the time
/// of the latest completed run of its cloud.
pub async fn sync_findings_writes_only_what_changed(store: SharedStore) {
    let cloud = fresh_cloud("sync");
    let i = fresh_insight("aws-sync-i");
    let j = fresh_insight("aws-sync-j");
    let mut rs: Vec<Resource> = (0..4)
        .map(|n| {
            resource(
                &cloud,
                ResourceType::AwsEc2Volume,
                "us-east-1",
                &format!("vol-sync-{n}"),
                &[],
                at(1),
            )
        })
        .collect();
    rs.sort_by(|a, b| a.uid.cmp(&b.uid));
    let page_end = rs[2].uid.clone();
    let sync = |after: Option<ResourceUid>,
                through: Option<ResourceUid>,
                holding: Vec<Finding>,
                now: Timestamp| {
        let store = store.clone();
        let cloud = cloud.clone();
        async move {
            store
                .sync_findings(Some(&cloud), after.as_ref(), through.as_ref(), holding, now)
                .await
                .expect("sync_findings")
        }
    };

    // run 1 at 100: two pages, everything new
    let page1 = vec![
        finding(&i, &rs[0], at(100)),
        finding(&i, &rs[1], at(100)),
        finding(&j, &rs[2], at(100)),
    ];
    let n = sync(None, Some(page_end.clone()), page1, at(100)).await;
    assert_eq!(n, (3, 0));
    let n = sync(
        Some(page_end.clone()),
        Some(rs[3].uid.clone()),
        vec![finding(&i, &rs[3], at(100))],
        at(100),
    )
    .await;
    assert_eq!(n, (1, 0));
    assert_eq!(
        sync(Some(rs[3].uid.clone()), None, vec![], at(100)).await,
        (0, 0)
    );
    let open = store.count_open_findings().await.expect("count");
    assert_eq!((open.get(&i), open.get(&j)), (Some(&3), Some(&1)));

    // run 2 at 200: the same findings hold, nothing is written
    let page1 = vec![
        finding(&i, &rs[0], at(200)),
        finding(&i, &rs[1], at(200)),
        finding(&j, &rs[2], at(200)),
    ];
    assert_eq!(
        sync(None, Some(page_end.clone()), page1, at(200)).await,
        (0, 0)
    );
    // until the run completes, its findings are confirmed by run 1
    let f = finding_on(&store, &i, &rs[0]).await;
    assert_eq!((f.first_seen, f.last_seen), (at(100), at(100)));
    // rs[3] vanished: it is on no page, the final sweep resolves its finding
    assert_eq!(
        sync(Some(page_end.clone()), None, vec![], at(200)).await,
        (0, 1)
    );
    let f = finding_on(&store, &i, &rs[0]).await;
    assert_eq!(
        (f.state, f.first_seen, f.last_seen, f.resolved_at),
        (FindingState::Open, at(100), at(200), None),
        "untouched, confirmed by run 2"
    );
    let gone = finding_on(&store, &i, &rs[3]).await;
    assert_eq!(
        (gone.state, gone.last_seen, gone.resolved_at),
        (FindingState::Resolved, at(100), Some(at(200)))
    );
    // the legacy sweep honours the confirmation: run 2 saw rs[0]'s finding at 200
    assert_eq!(
        store
            .resolve_findings(Some(&cloud), at(150), at(210))
            .await
            .expect("resolve"),
        0
    );

    // run 3 at 300: rs[1]'s finding no longer holds, rs[2] gains one of i
    let page1 = vec![
        finding(&i, &rs[0], at(300)),
        finding(&i, &rs[2], at(300)),
        finding(&j, &rs[2], at(300)),
    ];
    assert_eq!(
        sync(None, Some(page_end.clone()), page1, at(300)).await,
        (1, 1)
    );
    assert_eq!(
        sync(Some(page_end.clone()), None, vec![], at(300)).await,
        (0, 0)
    );
    let fixed = finding_on(&store, &i, &rs[1]).await;
    assert_eq!(
        (fixed.state, fixed.last_seen, fixed.resolved_at),
        (FindingState::Resolved, at(200), Some(at(300))),
        "resolved, last confirmed by run 2"
    );
    let new = finding_on(&store, &i, &rs[2]).await;
    assert_eq!((new.first_seen, new.last_seen), (at(300), at(300)));

    // run 4 at 400: rs[1]'s finding holds again and rs[3] is back: reopened, first_seen kept
    let page1 = vec![
        finding(&i, &rs[0], at(400)),
        finding(&i, &rs[1], at(400)),
        finding(&i, &rs[2], at(400)),
        finding(&j, &rs[2], at(400)),
    ];
    assert_eq!(
        sync(None, Some(page_end.clone()), page1, at(400)).await,
        (1, 0)
    );
    assert_eq!(
        sync(
            Some(page_end.clone()),
            None,
            vec![finding(&i, &rs[3], at(400))],
            at(400)
        )
        .await,
        (1, 0)
    );
    for r in [&rs[1], &rs[3]] {
        let back = finding_on(&store, &i, r).await;
        assert_eq!(
            (
                back.state,
                back.first_seen,
                back.last_seen,
                back.resolved_at
            ),
            (FindingState::Open, at(100), at(400), None),
            "reopened {}",
            r.id
        );
    }
    let f = finding_on(&store, &j, &rs[2]).await;
    assert_eq!((f.first_seen, f.last_seen), (at(100), at(400)));
    let open = store.count_open_findings().await.expect("count");
    assert_eq!((open.get(&i), open.get(&j)), (Some(&4), Some(&1)));
}

/// `sync_findings` touches only findings of its scope whose resource lies in its range;
/// with no scope, every cloud's.
pub async fn sync_findings_respects_its_range_and_scope(store: SharedStore) {
    let mine = fresh_cloud("sync-scope");
    let other = fresh_cloud("sync-scope-other");
    let insight = fresh_insight("aws-sync-scope");
    let rtype = ResourceType::AwsIamUser;
    let a = resource(&mine, rtype, "global", "user-a", &[], at(1));
    let b = resource(&mine, rtype, "global", "user-b", &[], at(1));
    let x = resource(&other, rtype, "global", "user-x", &[], at(1));
    store
        .upsert_findings(vec![
            finding(&insight, &a, at(10)),
            finding(&insight, &b, at(10)),
            finding(&insight, &x, at(10)),
        ])
        .await
        .expect("upsert");

    // a's range, in scope `mine`: only a's finding is resolved
    let (after, through) = just(&a);
    let n = store
        .sync_findings(Some(&mine), Some(&after), Some(&through), vec![], at(20))
        .await
        .expect("sync a");
    assert_eq!(n, (0, 1));
    assert_eq!(
        finding_on(&store, &insight, &b).await.state,
        FindingState::Open
    );
    assert_eq!(
        finding_on(&store, &insight, &x).await.state,
        FindingState::Open
    );

    // x's range, in scope `mine`: x belongs to another cloud, nothing happens
    let (after, through) = just(&x);
    let n = store
        .sync_findings(Some(&mine), Some(&after), Some(&through), vec![], at(20))
        .await
        .expect("sync x in mine");
    assert_eq!(n, (0, 0));
    assert_eq!(
        finding_on(&store, &insight, &x).await.state,
        FindingState::Open
    );
    // with no scope, it is resolved; no run was completed, so last_seen stays
    let n = store
        .sync_findings(None, Some(&after), Some(&through), vec![], at(30))
        .await
        .expect("sync x everywhere");
    assert_eq!(n, (0, 1));
    let fx = finding_on(&store, &insight, &x).await;
    assert_eq!(
        (fx.state, fx.last_seen, fx.resolved_at),
        (FindingState::Resolved, at(10), Some(at(30)))
    );
    let fb = finding_on(&store, &insight, &b).await;
    assert_eq!((fb.state, fb.last_seen), (FindingState::Open, at(10)));

    // a completed run of `mine` confirms b's finding, not the other cloud's
    let y = resource(&other, rtype, "global", "user-y", &[], at(1));
    store
        .upsert_findings(vec![finding(&insight, &y, at(10))])
        .await
        .expect("upsert y");
    let (after, _) = just(&b);
    let n = store
        .sync_findings(
            Some(&mine),
            Some(&after),
            None,
            vec![finding(&insight, &b, at(40))],
            at(40),
        )
        .await
        .expect("final sweep");
    assert_eq!(n, (0, 0));
    let fb = finding_on(&store, &insight, &b).await;
    assert_eq!((fb.first_seen, fb.last_seen), (at(10), at(40)));
    let fy = finding_on(&store, &insight, &y).await;
    assert_eq!((fy.state, fy.last_seen), (FindingState::Open, at(10)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_file_store_passes_the_contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/nested/dir/palisade.db", dir.path().display());
        all(open(&url).await.expect("open file store")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_memory_store_passes_the_contract() {
        all(open("sqlite::memory:").await.expect("open memory store")).await;
    }

    #[tokio::test]
    async fn sqlite_file_store_reopens_with_its_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/p.db", dir.path().display());
        reopen_keeps_data(&url).await;
    }
}
