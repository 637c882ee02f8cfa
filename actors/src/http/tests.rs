//! The REST API against a real SQLite store in memory, the in-process queue and bus, and
//! the built-in insight catalog: what a client sends, what it gets back. Requests go as
//! an admin (its API key in `Api-Key`) unless a test says otherwise ([`send_as`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::test::{self, TestRequest};
use actix_web::web::Bytes;
use async_trait::async_trait;
use serde_json::{json, Value};

use crate::cluster::registry::NodeRegistry;

use palisade_proto::{
    CloudAccount, CloudId, ClusterEvent, Credentials, Finding, FindingState, InsightId, Provider,
    Resource, ResourceType, ResourceUid, Timestamp,
};

use super::{app, bind, ApiState};
use crate::bus::memory::MemoryBus;
use crate::compliance::Catalog;
use crate::queue::memory::MemoryQueue;
use crate::settings::ComplianceSettings;
use crate::store::{
    AuditEntry, DeletionSweep, FindingQuery, Page, ResourceQuery, ScanQuery, Store, StoreError,
    StoredApiKey, StoredSession, StoredUser,
};

const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-s3cr3t";
const EXTERNAL_ID: &str = "ext-id-that-is-secret";

/// The API key of the admin every [`send`] authenticates as.
const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

/// Login limits of the test state: 3 failures per 60 s.
fn auth_settings() -> crate::settings::AuthSettings {
    let mut s = crate::settings::Settings::defaults()
        .expect("defaults")
        .auth;
    s.login_max_failures = 3;
    s.login_window_secs = 60;
    s
}

async fn state() -> ApiState {
    let store = crate::store::open("sqlite::memory:")
        .await
        .expect("sqlite in memory");
    crate::auth::bootstrap::ensure_bootstrap_key(&store, ADMIN_KEY)
        .await
        .expect("admin key");
    let settings = ComplianceSettings {
        required_tags: vec!["Owner".into()],
        page_size: 100,
    };
    ApiState {
        store,
        queue: Arc::new(MemoryQueue::new(100)),
        bus: Arc::new(MemoryBus::default()),
        catalog: Arc::new(Catalog::builtin(&settings).expect("builtin catalog")),
        registry: Arc::new(NodeRegistry::new(std::time::Duration::from_secs(5))),
        node_id: "node-test".into(),
        login: Arc::new(crate::auth::LoginPolicy::new(&auth_settings())),
        proxy: super::ReverseProxy::default(),
    }
}

/// What came back: status, headers' Allow, Set-Cookie and Retry-After, raw body, and the
/// body as JSON (null if none).
struct Reply {
    status: StatusCode,
    allow: Option<String>,
    set_cookie: Option<String>,
    retry_after: Option<String>,
    raw: Bytes,
    json: Value,
}

/// The request as the test admin (its API key), from 192.0.2.1.
async fn send<S, B>(app: &S, req: TestRequest) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    send_as(app, req.insert_header(("Api-Key", ADMIN_KEY))).await
}

/// The request as it is, from 192.0.2.1 unless it names a peer.
async fn send_as<S, B>(app: &S, req: TestRequest) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut req = req.to_request();
    if req.head().peer_addr.is_none() {
        req.head_mut().peer_addr = Some(PEER.parse().expect("peer"));
    }
    let res = test::call_service(app, req).await;
    let status = res.status();
    let header_of = |name: header::HeaderName| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let allow = header_of(header::ALLOW);
    let set_cookie = header_of(header::SET_COOKIE);
    let retry_after = header_of(header::RETRY_AFTER);
    let raw = test::read_body(res).await;
    let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        allow,
        set_cookie,
        retry_after,
        raw,
        json,
    }
}

const PEER: &str = "192.0.2.1:40000";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn keys_cloud_body(name: &str) -> Value {
    json!({
        "provider": "aws",
        "name": name,
        "regions": ["us-east-1", "eu-west-1"],
        "credentials": {"kind": "keys", "access_key_id": "AKIDEXAMPLE", "secret_access_key": SECRET},
    })
}

fn cloud(id: &str) -> CloudAccount {
    CloudAccount {
        id: CloudId(id.into()),
        provider: Provider::Aws,
        name: format!("cloud {id}"),
        regions: vec!["us-east-1".into(), "eu-west-1".into()],
        credentials: Credentials::Default,
        created_at: chrono::Utc::now(),
    }
}

fn resource(
    cloud: &CloudId,
    region: &str,
    rtype: ResourceType,
    id: &str,
    tags: &[(&str, &str)],
) -> Resource {
    let tags: BTreeMap<String, String> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Resource::harvested(
        cloud,
        "123456789012",
        region,
        rtype,
        id,
        id,
        tags,
        json!({"id": id}),
        chrono::Utc::now(),
    )
}

fn finding(insight: &str, r: &Resource, seen: Timestamp) -> Finding {
    Finding {
        insight: InsightId(insight.into()),
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

#[actix_web::test]
async fn clouds_are_created_listed_shown_and_deleted_without_secrets() {
    let app = test::init_service(app(state().await)).await;

    let created = send(
        &app,
        TestRequest::post()
            .uri("/v2/clouds")
            .set_json(keys_cloud_body("production")),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    assert!(!contains(&created.raw, SECRET));
    let id = created.json["id"].as_str().expect("an id").to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(created.json["name"], "production");
    assert_eq!(created.json["provider"], "aws");
    assert_eq!(created.json["regions"], json!(["us-east-1", "eu-west-1"]));
    assert_eq!(created.json["credentials"]["kind"], "keys");
    assert_eq!(created.json["credentials"]["access_key_id"], "AKIDEXAMPLE");

    let role = send(
        &app,
        TestRequest::post()
            .uri("/v2/clouds")
            .set_json(json!({
                "provider": "aws", "name": "audit", "regions": ["us-west-2"],
                "credentials": {"kind": "assume_role", "role_arn": "arn:aws:iam::123456789012:role/palisade", "external_id": EXTERNAL_ID},
            }))
            ,
    )
    .await;
    assert_eq!(role.status, StatusCode::CREATED, "{}", role.json);
    assert!(!contains(&role.raw, EXTERNAL_ID));

    let list = send(&app, TestRequest::get().uri("/v2/clouds")).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json["total"], 2);
    assert_eq!(list.json["items"].as_array().map(Vec::len), Some(2));
    assert!(!contains(&list.raw, SECRET) && !contains(&list.raw, EXTERNAL_ID));

    let one = send(&app, TestRequest::get().uri(&format!("/v2/clouds/{id}"))).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json["id"], id.as_str());
    assert!(!contains(&one.raw, SECRET));

    let deleted = send(&app, TestRequest::delete().uri(&format!("/v2/clouds/{id}"))).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.raw.is_empty());

    let gone = send(&app, TestRequest::get().uri(&format!("/v2/clouds/{id}"))).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.json["code"], "not_found");
    let again = send(&app, TestRequest::delete().uri(&format!("/v2/clouds/{id}"))).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    let list = send(&app, TestRequest::get().uri("/v2/clouds")).await;
    assert_eq!(list.json["total"], 1);
}

#[actix_web::test]
async fn harvest_request_queues_a_p0_job_that_shows_in_status_and_stats() {
    let st = state().await;
    let mut events = st.bus.subscribe();
    let app = test::init_service(app(st.clone())).await;
    let created = send(
        &app,
        TestRequest::post()
            .uri("/v2/clouds")
            .set_json(keys_cloud_body("prod")),
    )
    .await;
    let id = created.json["id"].as_str().expect("id").to_string();

    let empty = send(&app, TestRequest::get().uri("/v2/jobs/queues")).await;
    assert_eq!(empty.json["p0"]["depth"], 0);

    let accepted = send(
        &app,
        TestRequest::post().uri(&format!("/v2/clouds/{id}/harvest")),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.json);
    let job_id = accepted.json["job_id"]
        .as_str()
        .expect("job id")
        .to_string();

    let job = send(&app, TestRequest::get().uri(&format!("/v2/jobs/{job_id}"))).await;
    assert_eq!(job.status, StatusCode::OK, "{}", job.json);
    assert_eq!(job.json["id"], job_id.as_str());
    assert_eq!(job.json["state"], "queued");
    assert_eq!(job.json["priority"], "p0");
    assert_eq!(job.json["kind"], "harvest");
    assert_eq!(job.json["cloud"], id.as_str());
    assert_eq!(job.json["regions"], json!([]));
    assert!(job.json["enqueued_at"].is_string());
    assert!(job.json["started_at"].is_null() && job.json["error"].is_null());

    let stats = send(&app, TestRequest::get().uri("/v2/jobs/queues")).await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.json["p0"]["depth"], 1, "{}", stats.json);
    assert_eq!(stats.json["p1"]["depth"], 0);
    assert_eq!(stats.json["p2"]["depth"], 0);
    assert!(stats.json["p0"]["oldest_wait_secs"].is_number());
    assert!(stats.json["p0"]["mean_run_secs"].is_number());

    match events.try_recv() {
        Ok(ClusterEvent::JobEnqueued { job, .. }) => assert_eq!(job.as_str(), job_id),
        other => panic!("expected a job wake-up, got {other:?}"),
    }

    // a scoped harvest
    let scoped = send(
        &app,
        TestRequest::post()
            .uri(&format!("/v2/clouds/{id}/harvest"))
            .set_json(json!({"regions": ["eu-west-1"], "types": ["aws.ec2.volume"]})),
    )
    .await;
    assert_eq!(scoped.status, StatusCode::ACCEPTED, "{}", scoped.json);
    let scoped_id = scoped.json["job_id"].as_str().expect("job id").to_string();
    let job = send(
        &app,
        TestRequest::get().uri(&format!("/v2/jobs/{scoped_id}")),
    )
    .await;
    assert_eq!(job.json["regions"], json!(["eu-west-1"]));
    assert_eq!(job.json["types"], json!(["aws.ec2.volume"]));
    let stats = send(&app, TestRequest::get().uri("/v2/jobs/queues")).await;
    assert_eq!(stats.json["p0"]["depth"], 2);

    // a region the cloud does not harvest, a type that does not exist, a cloud that does not
    let foreign = send(
        &app,
        TestRequest::post()
            .uri(&format!("/v2/clouds/{id}/harvest"))
            .set_json(json!({"regions": ["ap-south-1"]})),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_type = send(
        &app,
        TestRequest::post()
            .uri(&format!("/v2/clouds/{id}/harvest"))
            .set_json(json!({"types": ["aws.ec2.nothing"]})),
    )
    .await;
    assert_eq!(bad_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = send(
        &app,
        TestRequest::post().uri("/v2/clouds/no-such-cloud/harvest"),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let stats = send(&app, TestRequest::get().uri("/v2/jobs/queues")).await;
    assert_eq!(
        stats.json["p0"]["depth"], 2,
        "refused requests queue nothing"
    );

    let unknown = send(&app, TestRequest::get().uri("/v2/jobs/no-such-job")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json["code"], "not_found");
}

/// Nine resources in one cloud: five instances in us-east-1 (three with an Owner tag, one
/// of them alice's), three volumes in eu-west-1, one IAM user; one instance in another cloud.
async fn seed_resources(st: &ApiState) -> Vec<Resource> {
    let c1 = cloud("c1");
    let c2 = cloud("c2");
    st.store.put_cloud(&c1).await.expect("put c1");
    st.store.put_cloud(&c2).await.expect("put c2");
    let mut batch = vec![];
    for i in 0..5 {
        let tags: &[(&str, &str)] = match i {
            0 => &[("Owner", "alice")],
            1 | 2 => &[("Owner", "bob")],
            _ => &[("Team", "x")],
        };
        batch.push(resource(
            &c1.id,
            "us-east-1",
            ResourceType::AwsEc2Instance,
            &format!("i-{i}"),
            tags,
        ));
    }
    for i in 0..3 {
        batch.push(resource(
            &c1.id,
            "eu-west-1",
            ResourceType::AwsEc2Volume,
            &format!("vol-{i}"),
            &[],
        ));
    }
    batch.push(resource(
        &c1.id,
        "global",
        ResourceType::AwsIamUser,
        "carol",
        &[],
    ));
    batch.push(resource(
        &c2.id,
        "us-east-1",
        ResourceType::AwsEc2Instance,
        "i-other",
        &[],
    ));
    st.store
        .upsert_resources(batch.clone())
        .await
        .expect("upsert");
    batch
}

#[actix_web::test]
async fn resources_are_filtered_and_paged() {
    let st = state().await;
    seed_resources(&st).await;
    let app = test::init_service(app(st.clone())).await;
    let total = |uri: &'static str| {
        let app = &app;
        async move {
            let r = send(app, TestRequest::get().uri(uri)).await;
            assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.json);
            let items = r.json["items"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(usize::MAX);
            (r.json["total"].as_u64().unwrap_or(u64::MAX), items, r.json)
        }
    };

    assert_eq!(total("/v2/resources").await.0, 10);
    assert_eq!(total("/v2/resources?cloud=c1").await.0, 9);
    assert_eq!(total("/v2/resources?cloud=c2").await.0, 1);
    assert_eq!(
        total("/v2/resources?cloud=c1&type=aws.ec2.instance")
            .await
            .0,
        5
    );
    assert_eq!(total("/v2/resources?region=eu-west-1").await.0, 3);
    assert_eq!(total("/v2/resources?tag=Owner").await.0, 3);
    assert_eq!(total("/v2/resources?tag=Owner=alice").await.0, 1);
    assert_eq!(
        total("/v2/resources?cloud=&type=&region=").await.0,
        10,
        "empty means absent"
    );
    let (t, n, page) = total("/v2/resources?type=aws.iam.user").await;
    assert_eq!((t, n), (1, 1));
    assert_eq!(page["items"][0]["type"], "aws.iam.user");
    assert_eq!(page["items"][0]["region"], "global");
    assert_eq!(page["items"][0]["id"], "carol");
    assert_eq!(page["items"][0]["properties"], json!({"id": "carol"}));

    // paging: every resource exactly once across pages of four
    let mut seen = std::collections::BTreeSet::new();
    for (offset, expect) in [(0, 4), (4, 4), (8, 1), (12, 0)] {
        let uri = format!("/v2/resources?cloud=c1&limit=4&offset={offset}");
        let r = send(&app, TestRequest::get().uri(&uri)).await;
        assert_eq!(r.json["total"], 9);
        let items = r.json["items"].as_array().expect("items");
        assert_eq!(items.len(), expect, "{uri}");
        for it in items {
            assert!(seen.insert(it["uid"].as_str().expect("uid").to_string()));
        }
    }
    assert_eq!(seen.len(), 9);

    // deleted resources only when asked for
    let now = chrono::Utc::now();
    let sweep = DeletionSweep {
        cloud: CloudId("c1".into()),
        rtype: ResourceType::AwsEc2Volume,
        region: Some("eu-west-1".into()),
        seen_before: now + chrono::Duration::seconds(60),
        now,
    };
    assert_eq!(st.store.mark_deleted(&sweep).await.expect("sweep"), 3);
    assert_eq!(total("/v2/resources?cloud=c1").await.0, 6);
    assert_eq!(
        total("/v2/resources?cloud=c1&include_deleted=true").await.0,
        9
    );
    let (t, _, page) = total("/v2/resources?type=aws.ec2.volume&include_deleted=1").await;
    assert_eq!(t, 3);
    assert!(page["items"][0]["deleted_at"].is_string());
}

#[actix_web::test]
async fn a_resource_is_found_by_uid_or_native_id_with_its_findings() {
    let st = state().await;
    let seeded = seed_resources(&st).await;
    let vol = seeded
        .iter()
        .find(|r| r.id == "vol-1")
        .expect("vol-1")
        .clone();
    let t0 = chrono::Utc::now() - chrono::Duration::seconds(120);
    let t1 = chrono::Utc::now();
    st.store
        .upsert_findings(vec![finding("aws-ec2-missing-owner-tag", &vol, t0)])
        .await
        .expect("old finding");
    st.store
        .upsert_findings(vec![finding("aws-ebs-unencrypted", &vol, t1)])
        .await
        .expect("new finding");
    let resolved = st
        .store
        .resolve_findings(None, t0 + chrono::Duration::seconds(1), t1)
        .await
        .expect("resolve");
    assert_eq!(resolved, 1);
    let app = test::init_service(app(st.clone())).await;

    let by_uid = send(
        &app,
        TestRequest::get().uri(&format!("/v2/resources/{}", vol.uid)),
    )
    .await;
    assert_eq!(by_uid.status, StatusCode::OK, "{}", by_uid.json);
    assert_eq!(by_uid.json["uid"], vol.uid.as_str());
    assert_eq!(by_uid.json["type"], "aws.ec2.volume");
    let findings = by_uid.json["findings"].as_array().expect("findings");
    let mut states: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["insight"].as_str().unwrap_or("").to_string(),
                f["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            ("aws-ebs-unencrypted".to_string(), "open".to_string()),
            (
                "aws-ec2-missing-owner-tag".to_string(),
                "resolved".to_string()
            ),
        ]
    );

    let by_native = send(&app, TestRequest::get().uri("/v2/resources/vol-1")).await;
    assert_eq!(by_native.status, StatusCode::OK);
    assert_eq!(by_native.json["uid"], vol.uid.as_str());
    assert_eq!(by_native.json["findings"].as_array().map(Vec::len), Some(2));

    let other = send(&app, TestRequest::get().uri("/v2/resources/i-3")).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.json["findings"], json!([]));

    let missing = send(&app, TestRequest::get().uri("/v2/resources/vol-404")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["code"], "not_found");
}

/// Tags and properties come back exactly as they were stored: the same JSON text, byte for
/// byte (the API passes the stored text through), in the list and in one resource, and the
/// rest of the resource as it serialises.
#[actix_web::test]
async fn resources_answer_their_stored_properties_byte_for_byte() {
    let st = state().await;
    let c = cloud("c1");
    st.store.put_cloud(&c).await.expect("put cloud");
    let mut r = resource(
        &c.id,
        "us-east-1",
        ResourceType::AwsS3Bucket,
        "odd-bucket",
        &[("Owner", "ops"), ("note", "quote \" and \\ and é")],
    );
    r.properties = json!({
        "big": 12_345_678_901_234_567u64, "neg": -7, "f": 0.1, "e": 1.5e300,
        "s": "tab\tnewline\nquote\"emoji😀</script>", "empty": {}, "nested": [[], {}, null, true],
        "Policy": {"Statement": [{"Effect": "Allow", "Principal": "*"}]}
    });
    // stores keep milliseconds
    r.first_seen = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    r.last_seen = r.first_seen;
    st.store
        .upsert_resources(vec![r.clone()])
        .await
        .expect("upsert");
    let app = test::init_service(app(st.clone())).await;
    let properties = serde_json::to_string(&r.properties).expect("encode properties");
    let tags = serde_json::to_string(&r.tags).expect("encode tags");
    let expected = serde_json::to_value(&r).expect("resource as json");

    let list = send(&app, TestRequest::get().uri("/v2/resources?cloud=c1")).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    let one = send(
        &app,
        TestRequest::get().uri(&format!("/v2/resources/{}", r.uid)),
    )
    .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.json);
    for (what, reply, item) in [
        ("list", &list, &list.json["items"][0]),
        ("one", &one, &one.json),
    ] {
        let raw = std::str::from_utf8(&reply.raw).expect("utf-8 body");
        assert!(
            raw.contains(&format!("\"properties\":{properties}")),
            "{what}: properties as stored: {raw}"
        );
        assert!(
            raw.contains(&format!("\"tags\":{tags}")),
            "{what}: tags as stored: {raw}"
        );
        for (field, value) in expected.as_object().expect("object") {
            assert_eq!(&item[field], value, "{what}: {field}");
        }
    }
    assert_eq!(one.json["findings"], json!([]));
}

#[actix_web::test]
async fn insights_list_counts_open_findings_and_pages_them() {
    let st = state().await;
    let seeded = seed_resources(&st).await;
    let t0 = chrono::Utc::now() - chrono::Duration::seconds(120);
    let t1 = chrono::Utc::now();
    let instances: Vec<&Resource> = seeded
        .iter()
        .filter(|r| r.rtype == ResourceType::AwsEc2Instance && r.cloud.as_str() == "c1")
        .collect();
    // five owner-tag findings: two stale (then resolved), three current
    let batch: Vec<Finding> = instances
        .iter()
        .enumerate()
        .map(|(i, r)| finding("aws-ec2-missing-owner-tag", r, if i < 2 { t0 } else { t1 }))
        .collect();
    st.store.upsert_findings(batch).await.expect("findings");
    let user = seeded.iter().find(|r| r.id == "carol").expect("carol");
    st.store
        .upsert_findings(vec![finding("aws-iam-user-no-mfa", user, t1)])
        .await
        .expect("mfa finding");
    st.store
        .resolve_findings(None, t0 + chrono::Duration::seconds(1), t1)
        .await
        .expect("resolve");
    let app = test::init_service(app(st.clone())).await;

    let list = send(&app, TestRequest::get().uri("/v2/insights")).await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.json["items"].as_array().expect("items");
    assert_eq!(
        list.json["total"].as_u64(),
        Some(st.catalog.list().len() as u64)
    );
    assert_eq!(items.len(), st.catalog.list().len());
    let open_of = |id: &str| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| i["open_findings"].clone())
    };
    assert_eq!(open_of("aws-ec2-missing-owner-tag"), Some(json!(3)));
    assert_eq!(open_of("aws-iam-user-no-mfa"), Some(json!(1)));
    assert_eq!(open_of("aws-s3-public-acl"), Some(json!(0)));
    let sg = items
        .iter()
        .find(|i| i["id"] == "aws-sg-ingress-22-world")
        .expect("sg insight");
    for field in ["name", "description", "severity"] {
        assert!(sg[field].is_string(), "{field}: {sg}");
    }
    assert_eq!(sg["resource_types"], json!(["aws.ec2.security-group"]));

    let one = send(
        &app,
        TestRequest::get().uri("/v2/insights/aws-ec2-missing-owner-tag"),
    )
    .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json["open_findings"], 3);
    let none = send(&app, TestRequest::get().uri("/v2/insights/no-such-insight")).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    let none = send(
        &app,
        TestRequest::get().uri("/v2/insights/no-such-insight/findings"),
    )
    .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);

    let page = |q: &str| {
        let uri = format!("/v2/insights/aws-ec2-missing-owner-tag/findings{q}");
        let app = &app;
        async move {
            let r = send(app, TestRequest::get().uri(&uri)).await;
            assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.json);
            let items = r.json["items"].as_array().cloned().unwrap_or_default();
            (r.json["total"].as_u64().unwrap_or(u64::MAX), items)
        }
    };
    let (total, items) = page("").await;
    assert_eq!((total, items.len()), (3, 3));
    assert!(items
        .iter()
        .all(|f| f["state"] == "open" && f["insight"] == "aws-ec2-missing-owner-tag"));
    let (total, items) = page("?state=resolved").await;
    assert_eq!((total, items.len()), (2, 2));
    assert!(items.iter().all(|f| f["state"] == "resolved"));
    assert_eq!(page("?state=all").await.0, 5);
    let (total, first) = page("?state=all&limit=2").await;
    assert_eq!((total, first.len()), (5, 2));
    let (_, second) = page("?state=all&limit=2&offset=2").await;
    let (_, third) = page("?state=all&limit=2&offset=4").await;
    assert_eq!((second.len(), third.len()), (2, 1));
    let mut uids: Vec<String> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .map(|f| f["resource_uid"].as_str().unwrap_or("").to_string())
        .collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 5, "pages overlap: {uids:?}");
}

/// (method, uri, content type, body, status, code)
type Case<'a> = (&'a str, String, Option<&'a str>, String, u16, &'a str);

#[actix_web::test]
async fn malformed_input_gets_a_json_4xx_and_never_a_5xx() {
    let st = state().await;
    st.store.put_cloud(&cloud("c1")).await.expect("cloud");
    let app = test::init_service(app(st)).await;
    let huge = format!(
        "{{\"provider\":\"aws\",\"name\":\"{}\",\"regions\":[\"us-east-1\"],\"credentials\":{{\"kind\":\"default\"}}}}",
        "x".repeat(300 * 1024)
    );
    let ok_creds = json!({"kind": "default"});
    let body = |provider: Value, name: Value, regions: Value, creds: Value| {
        json!({"provider": provider, "name": name, "regions": regions, "credentials": creds})
            .to_string()
    };
    let cases: Vec<Case<'_>> = vec![
        // (method, uri, content type, body, status, code)
        ("POST", "/v2/clouds".into(), Some("application/json"), "{\"provider\":".into(), 400, "malformed_json"),
        ("POST", "/v2/clouds".into(), Some("application/json"), "not json at all".into(), 400, "malformed_json"),
        ("POST", "/v2/clouds".into(), Some("application/json"), "".into(), 400, "malformed_json"),
        ("POST", "/v2/clouds".into(), Some("application/json"), "[]".into(), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), "null".into(), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!(5), json!(["us-east-1"]), ok_creds.clone()), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("n"), json!("us-east-1"), ok_creds.clone()), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), json!({"provider": "aws", "name": "n", "regions": ["us-east-1"], "credentials": ok_creds, "extra": 1}).to_string(), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), json!({"provider": "aws", "name": "n", "regions": ["us-east-1"]}).to_string(), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("n"), json!(["us-east-1"]), json!({"kind": "keys", "access_key_id": "AKID"})), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("n"), json!(["us-east-1"]), json!({"kind": "keys", "access_key_id": "AKID", "secret_access_key": SECRET, "region": "x"})), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("n"), json!(["us-east-1"]), json!({"kind": "keys", "access_key_id": "", "secret_access_key": SECRET})), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("n"), json!(["us-east-1"]), json!({"kind": "magic"})), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("n"), json!(["us-east-1"]), json!({"kind": "assume_role", "role_arn": "not-an-arn"})), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("azure"), json!("n"), json!(["us-east-1"]), ok_creds.clone()), 422, "unsupported_provider"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("digitalocean"), json!("n"), json!(["us-east-1"]), ok_creds.clone()), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("   "), json!(["us-east-1"]), ok_creds.clone()), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("n".repeat(201)), json!(["us-east-1"]), ok_creds.clone()), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("n"), json!([]), ok_creds.clone()), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), Some("application/json"), body(json!("aws"), json!("n"), json!(["us-east-1", "Mars"]), ok_creds.clone()), 422, "invalid_body"),
        ("POST", "/v2/clouds".into(), None, body(json!("aws"), json!("n"), json!(["us-east-1"]), ok_creds.clone()), 415, "unsupported_media_type"),
        ("POST", "/v2/clouds".into(), Some("text/plain"), body(json!("aws"), json!("n"), json!(["us-east-1"]), ok_creds.clone()), 415, "unsupported_media_type"),
        ("POST", "/v2/clouds".into(), Some("application/json"), huge.clone(), 413, "payload_too_large"),
        ("POST", "/v2/clouds/c1/harvest".into(), Some("application/json"), huge, 413, "payload_too_large"),
        ("POST", "/v2/clouds/c1/harvest".into(), Some("application/json"), "{\"regions\":".into(), 400, "malformed_json"),
        ("POST", "/v2/clouds/c1/harvest".into(), Some("application/json"), "{\"zones\":[]}".into(), 422, "invalid_body"),
        ("POST", "/v2/clouds/c1/harvest".into(), Some("application/json"), "{\"regions\":\"us-east-1\"}".into(), 422, "invalid_body"),
        ("POST", "/v2/clouds/c1/harvest".into(), Some("text/plain"), "{}".into(), 415, "unsupported_media_type"),
        ("GET", "/v2/resources?limit=abc".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/v2/resources?limit=0".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/v2/resources?limit=5000".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/v2/resources?offset=-1".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/v2/resources?type=aws.ec2.nothing".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/v2/resources?include_deleted=maybe".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/v2/resources?types=aws.ec2.instance".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/v2/resources?limit=1&limit=2".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/v2/insights/aws-ebs-unencrypted/findings?state=closed".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/v2/insights/aws-ebs-unencrypted/findings?limit=-5".into(), None, "".into(), 400, "invalid_parameter"),
        ("GET", "/nope".into(), None, "".into(), 404, "not_found"),
        ("GET", "/v2".into(), None, "".into(), 404, "not_found"),
        ("GET", "/v2/clouds/c1/nothing".into(), None, "".into(), 404, "not_found"),
        ("GET", "/v2/resources/%ff%fe".into(), None, "".into(), 404, "not_found"),
        ("DELETE", "/v2/resources".into(), None, "".into(), 405, "method_not_allowed"),
        ("PUT", "/v2/clouds".into(), Some("application/json"), "{}".into(), 405, "method_not_allowed"),
        ("POST", "/healthz".into(), None, "".into(), 405, "method_not_allowed"),
        ("GET", "/v2/clouds/c1/harvest".into(), None, "".into(), 405, "method_not_allowed"),
        ("DELETE", "/v2/jobs/queues".into(), None, "".into(), 405, "method_not_allowed"),
    ];
    let errors_before = crate::metrics::value(
        "palisade_http_errors_total",
        &[("code", "method_not_allowed")],
    );
    for (method, uri, ctype, body, status, code) in cases {
        let mut req = TestRequest::default()
            .method(method.parse().expect("method"))
            .uri(&uri)
            .set_payload(body.clone());
        if let Some(ct) = ctype {
            req = req.insert_header((header::CONTENT_TYPE, ct));
        }
        let r = send(&app, req).await;
        let shown: String = body.chars().take(120).collect();
        assert_eq!(
            r.status.as_u16(),
            status,
            "{method} {uri} {shown}: {}",
            r.json
        );
        assert_eq!(r.json["code"], code, "{method} {uri} {shown}: {}", r.json);
        let message = r.json["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{method} {uri}: {}", r.json);
        assert!(!contains(&r.raw, SECRET), "{method} {uri}: {}", r.json);
        if status == 405 {
            assert!(
                r.allow.as_deref().is_some_and(|a| !a.is_empty()),
                "{method} {uri}: no Allow"
            );
        }
    }
    // a bad parameter is named
    let r = send(&app, TestRequest::get().uri("/v2/resources?limit=abc")).await;
    assert!(
        r.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit")),
        "{}",
        r.json
    );
    let r = send(&app, TestRequest::get().uri("/v2/resources?type=x")).await;
    assert!(
        r.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("type")),
        "{}",
        r.json
    );
    // a value sent in the wrong place is not echoed back
    let r = send(
        &app,
        TestRequest::post()
            .uri("/v2/clouds")
            .set_json(json!({"provider": "aws", "name": "n", "regions": ["us-east-1"], "credentials": SECRET}))
            ,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!contains(&r.raw, SECRET), "{}", r.json);

    let errors_after = crate::metrics::value(
        "palisade_http_errors_total",
        &[("code", "method_not_allowed")],
    );
    assert!(
        errors_after >= errors_before + 5,
        "{errors_before} -> {errors_after}"
    );
    // nothing above was stored
    let list = send(&app, TestRequest::get().uri("/v2/clouds")).await;
    assert_eq!(list.json["total"], 1);
}

#[actix_web::test]
async fn probes_and_metrics() {
    let app = test::init_service(app(state().await)).await;
    let health = send(&app, TestRequest::get().uri("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json["status"], "ok");
    let ready = send(&app, TestRequest::get().uri("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    send(&app, TestRequest::get().uri("/no-such-route")).await;
    let metrics = send(&app, TestRequest::get().uri("/metrics")).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&metrics.raw);
    assert!(
        text.contains("palisade_http_requests_total{status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("palisade_http_requests_total{status=\"404\"}"),
        "{text}"
    );
    assert!(
        text.contains("palisade_http_errors_total{code=\"not_found\"}"),
        "{text}"
    );
}

#[actix_web::test]
async fn dead_letters_cancel_and_drain_answer_as_documented() {
    let app = test::init_service(app(state().await)).await;
    // the embedded queue's failures are final and never dead-lettered
    let r = send(&app, TestRequest::get().uri("/v2/jobs/dead")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["total"], 0);
    let r = send(&app, TestRequest::get().uri("/v2/jobs/dead?limit=0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let r = send(&app, TestRequest::get().uri("/v2/jobs/dead?nope=1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let r = send(&app, TestRequest::post().uri("/v2/jobs/nope/requeue")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
    assert_eq!(r.json["code"], "not_found");
    // cancel: unknown job, a job that is only queued, a drain request
    let r = send(&app, TestRequest::post().uri("/v2/jobs/nope/cancel")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
    let body = keys_cloud_body("c");
    let r = send(&app, TestRequest::post().uri("/v2/clouds").set_json(&body)).await;
    let cloud = r.json["id"].as_str().expect("cloud id").to_string();
    let r = send(
        &app,
        TestRequest::post().uri(&format!("/v2/clouds/{cloud}/harvest")),
    )
    .await;
    let job = r.json["job_id"].as_str().expect("job id").to_string();
    let r = send(
        &app,
        TestRequest::post().uri(&format!("/v2/jobs/{job}/cancel")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert!(
        r.json["message"]
            .as_str()
            .is_some_and(|m| m.contains("queued")),
        "{}",
        r.json
    );
    let r = send(
        &app,
        TestRequest::post().uri("/v2/cluster/nodes/node-x/drain"),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.json);
    assert_eq!(r.json["node"], "node-x");
    let q = send(&app, TestRequest::get().uri("/v2/jobs/queues")).await;
    assert_eq!(q.json["dead_letter"], 0, "{}", q.json);
    assert!(q.json["in_flight_per_node"].is_object(), "{}", q.json);
}

#[actix_web::test]
async fn cluster_nodes_lists_the_nodes_heard_from() {
    let st = state().await;
    st.registry
        .record("worker-1", vec!["worker".into()], 2, chrono::Utc::now());
    st.registry.record(
        "web-1",
        vec!["interface".into()],
        0,
        chrono::Utc::now() - chrono::Duration::seconds(20),
    );
    let app = test::init_service(app(st)).await;
    let r = send(&app, TestRequest::get().uri("/v2/cluster/nodes")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["total"], 2);
    assert_eq!(r.json["items"][0]["node"], "web-1");
    assert_eq!(r.json["items"][0]["state"], "stale");
    assert_eq!(r.json["items"][1]["node"], "worker-1");
    assert_eq!(r.json["items"][1]["state"], "up");
    assert_eq!(r.json["items"][1]["running_jobs"], 2);
    assert_eq!(r.json["items"][1]["roles"], json!(["worker"]));
    let post = send(&app, TestRequest::post().uri("/v2/cluster/nodes")).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A store whose backend is down: every call fails as an outage does.
struct DownStore;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable(
        "connection refused to db-internal-host:3306".into(),
    ))
}

#[async_trait]
impl Store for DownStore {
    async fn put_cloud(&self, _: &CloudAccount) -> Result<(), StoreError> {
        down()
    }
    async fn get_cloud(&self, _: &CloudId) -> Result<Option<CloudAccount>, StoreError> {
        down()
    }
    async fn list_clouds(&self) -> Result<Vec<CloudAccount>, StoreError> {
        down()
    }
    async fn delete_cloud(&self, _: &CloudId) -> Result<bool, StoreError> {
        down()
    }
    async fn upsert_resources(&self, _: Vec<Resource>) -> Result<(), StoreError> {
        down()
    }
    async fn mark_deleted(&self, _: &DeletionSweep) -> Result<u64, StoreError> {
        down()
    }
    async fn list_resources(&self, _: &ResourceQuery) -> Result<Page<Resource>, StoreError> {
        down()
    }
    async fn get_resource(&self, _: &str) -> Result<Option<Resource>, StoreError> {
        down()
    }
    async fn scan_resources(
        &self,
        _: &ScanQuery,
        _: Option<&ResourceUid>,
        _: usize,
    ) -> Result<Vec<Resource>, StoreError> {
        down()
    }
    async fn count_resources_by_type(
        &self,
        _: Option<&CloudId>,
    ) -> Result<BTreeMap<ResourceType, u64>, StoreError> {
        down()
    }
    async fn upsert_findings(&self, _: Vec<Finding>) -> Result<(), StoreError> {
        down()
    }
    async fn resolve_findings(
        &self,
        _: Option<&CloudId>,
        _: Timestamp,
        _: Timestamp,
    ) -> Result<u64, StoreError> {
        down()
    }
    async fn sync_findings(
        &self,
        _: Option<&CloudId>,
        _: Option<&ResourceUid>,
        _: Option<&ResourceUid>,
        _: Vec<Finding>,
        _: Timestamp,
    ) -> Result<(u64, u64), StoreError> {
        down()
    }
    async fn list_findings(&self, _: &FindingQuery) -> Result<Page<Finding>, StoreError> {
        down()
    }
    async fn count_open_findings(&self) -> Result<BTreeMap<InsightId, u64>, StoreError> {
        down()
    }
    async fn create_user(&self, _: &StoredUser) -> Result<bool, StoreError> {
        down()
    }
    async fn get_user(&self, _: &str) -> Result<Option<StoredUser>, StoreError> {
        down()
    }
    async fn list_users(&self) -> Result<Vec<StoredUser>, StoreError> {
        down()
    }
    async fn put_api_key(&self, _: &StoredApiKey) -> Result<bool, StoreError> {
        down()
    }
    async fn find_api_key(
        &self,
        _: &str,
    ) -> Result<Option<(StoredApiKey, crate::auth::Role)>, StoreError> {
        down()
    }
    async fn get_api_key(&self, _: &str) -> Result<Option<StoredApiKey>, StoreError> {
        down()
    }
    async fn list_api_keys(&self, _: Option<&str>) -> Result<Vec<StoredApiKey>, StoreError> {
        down()
    }
    async fn revoke_api_key(&self, _: &str, _: Timestamp) -> Result<bool, StoreError> {
        down()
    }
    async fn touch_api_key(&self, _: &str, _: Timestamp) -> Result<(), StoreError> {
        down()
    }
    async fn put_session(&self, _: &StoredSession) -> Result<(), StoreError> {
        down()
    }
    async fn find_session(
        &self,
        _: &str,
        _: Timestamp,
    ) -> Result<Option<(StoredSession, crate::auth::Role)>, StoreError> {
        down()
    }
    async fn delete_session(&self, _: &str) -> Result<bool, StoreError> {
        down()
    }
    async fn purge_sessions(&self, _: Timestamp) -> Result<u64, StoreError> {
        down()
    }
    async fn append_audit(&self, _: &AuditEntry) -> Result<(), StoreError> {
        down()
    }
    async fn list_audit(&self, _: u32, _: u64) -> Result<Page<AuditEntry>, StoreError> {
        down()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        down()
    }
}

#[actix_web::test]
async fn a_store_outage_is_a_503_that_leaks_nothing_and_a_closed_queue_too() {
    let mut st = state().await;
    st.store = Arc::new(DownStore);
    let svc = test::init_service(app(st.clone())).await;
    for uri in [
        "/readyz",
        "/v2/clouds",
        "/v2/resources",
        "/v2/insights",
        "/v2/resources/x",
    ] {
        let r = send(&svc, TestRequest::get().uri(uri)).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(r.json["code"], "unavailable", "{uri}");
        assert!(!contains(&r.raw, "db-internal-host"), "{uri}: {}", r.json);
    }
    let health = send(&svc, TestRequest::get().uri("/healthz")).await;
    assert_eq!(
        health.status,
        StatusCode::OK,
        "liveness does not depend on the store"
    );

    // a closed queue (shutting down) refuses new work with a 503
    let st = state().await;
    st.store.put_cloud(&cloud("c1")).await.expect("cloud");
    st.queue.close().await;
    let svc = test::init_service(app(st)).await;
    let r = send(&svc, TestRequest::post().uri("/v2/clouds/c1/harvest")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    assert_eq!(r.json["code"], "unavailable");
}

#[actix_web::test]
async fn bind_serves_on_a_socket_and_stops_gracefully() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let server = bind(addr, 2, state().await).expect("bind");
    let handle = server.handle();
    let running = actix_web::rt::spawn(server);

    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).await.expect("read");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"status\":\"ok\""), "{reply}");

    handle.stop(true).await;
    running.await.expect("join").expect("server ran");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening after stop"
    );
}

// ---- authentication and authorisation ----

/// A user with `role` and an API key of theirs, made straight in the store.
async fn key_for(st: &ApiState, user: &str, role: crate::auth::Role) -> String {
    st.store
        .create_user(&StoredUser {
            name: user.into(),
            role,
            password_hash: String::new(),
            created_at: chrono::Utc::now(),
        })
        .await
        .expect("user");
    let key = crate::auth::token::new_api_key();
    st.store
        .put_api_key(&StoredApiKey {
            id: key.id.clone(),
            user: user.into(),
            name: format!("{user}'s key"),
            hash: key.hash.clone(),
            created_at: chrono::Utc::now(),
            last_used: None,
            revoked_at: None,
        })
        .await
        .expect("key");
    key.secret
}

fn with_key(req: TestRequest, key: &str) -> TestRequest {
    req.insert_header(("Api-Key", key.to_string()))
}

/// The `palisade_session` cookie of a Set-Cookie header, as a Cookie header value.
fn session_of(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .expect("name=value")
        .trim()
        .to_string()
}

#[actix_web::test]
async fn every_registered_route_has_an_access_rule_and_every_rule_a_route() {
    use crate::auth::access::{rule, RULES};
    let mut pairs = Vec::new();
    for spec in super::ROUTES.iter().chain(super::GUI_ROUTES) {
        for (method, _) in spec.methods {
            assert!(
                rule(method.as_str(), spec.path).is_some(),
                "{method} {} is registered but has no access rule",
                spec.path
            );
            pairs.push((method.as_str().to_string(), spec.path.to_string()));
        }
    }
    assert!(pairs.len() >= 25, "{pairs:?}");
    for (method, pattern, _) in RULES {
        assert!(
            pairs.iter().any(|(m, p)| m == method && p == pattern),
            "the rule for {method} {pattern} names no registered route"
        );
    }
}

#[actix_web::test]
async fn requests_without_credentials_get_401_and_only_probes_metrics_and_login_are_open() {
    let app = test::init_service(app(state().await)).await;
    for (method, uri) in [
        ("GET", "/v2/clouds"),
        ("POST", "/v2/clouds"),
        ("GET", "/v2/resources"),
        ("GET", "/v2/audit"),
        ("GET", "/v2/user/me"),
        ("POST", "/v2/cluster/reload"),
        ("GET", "/v2/no-such-route"),
        ("PUT", "/v2/clouds"),
    ] {
        let req = TestRequest::default()
            .method(method.parse().expect("method"))
            .uri(uri);
        let r = send_as(&app, req).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri}: {}",
            r.json
        );
        assert_eq!(r.json["code"], "unauthenticated", "{method} {uri}");
    }
    let r = send_as(
        &app,
        with_key(TestRequest::get().uri("/v2/clouds"), "pal_not-a-key"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["code"], "unauthenticated");
    let r = send_as(
        &app,
        TestRequest::get()
            .uri("/v2/clouds")
            .insert_header((header::COOKIE, "palisade_session=forged")),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);

    for uri in ["/healthz", "/readyz", "/metrics"] {
        let r = send_as(&app, TestRequest::get().uri(uri)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri} is open");
    }
    // with credentials, an unknown route is the usual 404 and a wrong method the 405
    let r = send(&app, TestRequest::get().uri("/v2/no-such-route")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&app, TestRequest::put().uri("/v2/clouds")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[actix_web::test]
async fn roles_are_enforced_on_every_kind_of_route() {
    use crate::auth::Role;
    let st = state().await;
    st.store.put_cloud(&cloud("c1")).await.expect("cloud");
    let viewer = key_for(&st, "vera", Role::Viewer).await;
    let operator = key_for(&st, "otto", Role::Operator).await;
    let app = test::init_service(app(st)).await;
    let call = |method: &str, uri: &str, key: &str, body: Option<Value>| {
        let mut req = TestRequest::default()
            .method(method.parse().expect("method"))
            .uri(uri)
            .insert_header(("Api-Key", key.to_string()));
        if let Some(b) = body {
            req = req.set_json(b);
        }
        req
    };
    let cases: Vec<(&str, &str, &str, Option<Value>, u16)> = vec![
        ("GET", "/v2/clouds", &viewer, None, 200),
        ("GET", "/v2/resources", &viewer, None, 200),
        ("GET", "/v2/jobs/queues", &viewer, None, 200),
        ("GET", "/v2/user/me", &viewer, None, 200),
        (
            "POST",
            "/v2/clouds",
            &viewer,
            Some(keys_cloud_body("v")),
            403,
        ),
        ("POST", "/v2/clouds/c1/harvest", &viewer, None, 403),
        ("DELETE", "/v2/clouds/c1", &viewer, None, 403),
        ("POST", "/v2/jobs/x/cancel", &viewer, None, 403),
        ("GET", "/v2/users", &viewer, None, 403),
        ("GET", "/v2/audit", &viewer, None, 403),
        // the router's re-quoted path decides, not the raw one
        ("GET", "/v2/%75sers", &viewer, None, 403),
        (
            "POST",
            "/v2/clouds",
            &operator,
            Some(keys_cloud_body("o")),
            201,
        ),
        ("POST", "/v2/clouds/c1/harvest", &operator, None, 202),
        ("POST", "/v2/jobs/nope/requeue", &operator, None, 404),
        ("POST", "/v2/cluster/reload", &operator, None, 403),
        ("POST", "/v2/cluster/nodes/n1/drain", &operator, None, 403),
        (
            "POST",
            "/v2/users",
            &operator,
            Some(json!({"name":"x","password":"long enough","role":"admin"})),
            403,
        ),
        ("GET", "/v2/audit", &operator, None, 403),
        ("POST", "/v2/cluster/reload", ADMIN_KEY, None, 202),
        ("GET", "/v2/audit", ADMIN_KEY, None, 200),
        ("GET", "/v2/users", ADMIN_KEY, None, 200),
    ];
    for (method, uri, key, body, status) in cases {
        let r = send_as(&app, call(method, uri, key, body)).await;
        assert_eq!(r.status.as_u16(), status, "{method} {uri}: {}", r.json);
        if status == 403 {
            assert_eq!(r.json["code"], "forbidden", "{method} {uri}");
        }
    }
}

#[actix_web::test]
async fn login_sets_a_strict_http_only_cookie_and_mutations_need_the_csrf_token() {
    let mut st = state().await;
    st.proxy.trusted =
        super::forwarded::TrustedProxies::new(vec!["10.0.0.0/8".parse().expect("net")]);
    let app = test::init_service(app(st)).await;
    let r = send(
        &app,
        TestRequest::post()
            .uri("/v2/users")
            .set_json(json!({"name": "olga", "password": "correct horse", "role": "operator"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["role"], "operator");
    assert!(!contains(&r.raw, "correct horse") && !contains(&r.raw, "argon2"));
    let r = send(
        &app,
        TestRequest::post()
            .uri("/v2/users")
            .set_json(json!({"name": "olga", "password": "another one", "role": "viewer"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = send(
        &app,
        TestRequest::post()
            .uri("/v2/users")
            .set_json(json!({"name": "short", "password": "short", "role": "viewer"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let login = |user: &str, pass: &str| {
        TestRequest::post()
            .uri("/v2/public/user/login")
            .set_json(json!({"username": user, "password": pass}))
    };
    // failures from addresses of their own, to stay below the limit of one address
    let wrong = send_as(
        &app,
        login("olga", "wrong horse").peer_addr("198.51.100.7:1".parse().expect("peer")),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json["code"], "invalid_credentials");
    assert!(wrong.set_cookie.is_none());
    let nobody = send_as(
        &app,
        login("nobody", "wrong horse").peer_addr("198.51.100.8:1".parse().expect("peer")),
    )
    .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    assert_eq!(nobody.json, wrong.json, "unknown users look the same");
    let bootstrap = send_as(
        &app,
        login("bootstrap", "").peer_addr("198.51.100.9:1".parse().expect("peer")),
    )
    .await;
    assert_eq!(
        bootstrap.status,
        StatusCode::UNAUTHORIZED,
        "no password, no login"
    );

    let ok = send_as(&app, login("olga", "correct horse")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    assert_eq!(ok.json["user"], "olga");
    assert_eq!(ok.json["role"], "operator");
    let csrf = ok.json["csrf_token"]
        .as_str()
        .expect("csrf token")
        .to_string();
    assert!(csrf.len() >= 43);
    let set = ok.set_cookie.expect("a session cookie");
    for part in [
        "palisade_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
    ] {
        assert!(set.contains(part), "{part} in {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let cookie = session_of(&set);

    let me = send_as(
        &app,
        TestRequest::get()
            .uri("/v2/user/me")
            .insert_header((header::COOKIE, cookie.clone())),
    )
    .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json["user"], "olga");
    assert_eq!(me.json["via"], "session");

    let create = |token: Option<&str>| {
        let mut req = TestRequest::post()
            .uri("/v2/clouds")
            .insert_header((header::COOKIE, cookie.clone()))
            .set_json(keys_cloud_body("by-session"));
        if let Some(t) = token {
            req = req.insert_header(("X-CSRF-Token", t.to_string()));
        }
        req
    };
    for token in [None, Some("wrong"), Some("")] {
        let r = send_as(&app, create(token)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{token:?}: {}", r.json);
        assert_eq!(r.json["code"], "csrf_rejected");
    }
    let r = send_as(&app, create(Some(&csrf))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    // over https (as a trusted proxy says) the cookie is Secure; an untrusted peer
    // claiming https does not make it so
    let login_via = |peer: &str| {
        TestRequest::post()
            .uri("/v2/public/user/login")
            .peer_addr(format!("{peer}:443").parse().expect("peer"))
            .insert_header(("X-Forwarded-Proto", "https"))
            .set_json(json!({"username": "olga", "password": "correct horse"}))
    };
    let secure = send_as(&app, login_via("10.0.0.2")).await;
    assert_eq!(secure.status, StatusCode::OK);
    assert!(secure.set_cookie.unwrap_or_default().contains("; Secure"));
    let plain = send_as(&app, login_via("198.51.100.4")).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(!plain.set_cookie.unwrap_or_default().contains("; Secure"));

    let out = send_as(
        &app,
        TestRequest::post()
            .uri("/v2/user/logout")
            .insert_header((header::COOKIE, cookie.clone()))
            .insert_header(("X-CSRF-Token", csrf.clone())),
    )
    .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert!(out.set_cookie.unwrap_or_default().contains("Max-Age=0"));
    let after = send_as(
        &app,
        TestRequest::get()
            .uri("/v2/user/me")
            .insert_header((header::COOKIE, cookie)),
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "the session ended");
}

#[actix_web::test]
async fn failed_logins_are_limited_per_user_and_per_address() {
    let st = state().await;
    crate::auth::bootstrap::add_user(
        &st.store,
        "lena",
        crate::auth::Role::Viewer,
        "right password",
    )
    .await
    .expect("user");
    crate::auth::bootstrap::add_user(&st.store, "mo", crate::auth::Role::Viewer, "right password")
        .await
        .expect("user");
    let app = test::init_service(app(st)).await;
    let login = |user: &str, pass: &str, peer: &str| {
        TestRequest::post()
            .uri("/v2/public/user/login")
            .peer_addr(peer.parse().expect("peer"))
            .set_json(json!({"username": user, "password": pass}))
    };
    let failures = || crate::metrics::value("palisade_auth_login_failures_total", &[]);
    let before = failures();
    // the limit of the test state: 3 failures in 60 s
    for _ in 0..3 {
        let r = send_as(&app, login("lena", "guess", "198.51.100.1:1")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert!(failures() >= before + 3);
    // the user is blocked from anywhere, even with the right password
    let r = send_as(&app, login("lena", "right password", "198.51.100.2:1")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
    assert_eq!(r.json["code"], "too_many_requests");
    let wait: u64 = r
        .retry_after
        .as_deref()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    // the address is blocked for every user
    let r = send_as(&app, login("mo", "right password", "198.51.100.1:2")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // another user from another address is not
    let r = send_as(&app, login("mo", "right password", "198.51.100.3:1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

#[actix_web::test]
async fn a_key_revoked_on_another_node_is_refused_once_the_cache_entry_expires() {
    use crate::auth::Role;
    let mut st = state().await;
    let mut auth = auth_settings();
    auth.api_key_cache_secs = 1;
    st.login = Arc::new(crate::auth::LoginPolicy::new(&auth));
    let key = key_for(&st, "nora", Role::Viewer).await;
    let store = st.store.clone();
    let app = test::init_service(app(st)).await;

    let me = send_as(&app, with_key(TestRequest::get().uri("/v2/user/me"), &key)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.json);
    let id = me.json["api_key"]
        .as_str()
        .expect("the key's id")
        .to_string();
    // revoked in the store, as another node's DELETE /v2/api-keys/{id} does
    assert!(store
        .revoke_api_key(&id, chrono::Utc::now())
        .await
        .expect("revoke"));
    let cached = send_as(&app, with_key(TestRequest::get().uri("/v2/user/me"), &key)).await;
    assert_eq!(
        cached.status,
        StatusCode::OK,
        "within api_key_cache_secs this node still answers from its cache"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = send_as(&app, with_key(TestRequest::get().uri("/v2/user/me"), &key)).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "refused once the entry expired: {}",
        r.json
    );
}

#[actix_web::test]
async fn without_a_key_cache_a_key_revoked_elsewhere_is_refused_at_once() {
    use crate::auth::Role;
    let mut st = state().await;
    let mut auth = auth_settings();
    auth.api_key_cache_secs = 0;
    st.login = Arc::new(crate::auth::LoginPolicy::new(&auth));
    let key = key_for(&st, "olga", Role::Viewer).await;
    let store = st.store.clone();
    let app = test::init_service(app(st)).await;

    let me = send_as(&app, with_key(TestRequest::get().uri("/v2/user/me"), &key)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.json);
    let id = me.json["api_key"]
        .as_str()
        .expect("the key's id")
        .to_string();
    assert!(store
        .revoke_api_key(&id, chrono::Utc::now())
        .await
        .expect("revoke"));
    let r = send_as(&app, with_key(TestRequest::get().uri("/v2/user/me"), &key)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
}

#[actix_web::test]
async fn api_keys_are_created_shown_once_listed_and_revoked() {
    use crate::auth::Role;
    let st = state().await;
    let operator = key_for(&st, "otto", Role::Operator).await;
    let viewer = key_for(&st, "vera", Role::Viewer).await;
    let app = test::init_service(app(st)).await;

    let made = send_as(
        &app,
        with_key(TestRequest::post().uri("/v2/api-keys"), &operator)
            .set_json(json!({"name": "ci pipeline"})),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.json);
    let key = made.json["key"].as_str().expect("the key").to_string();
    let id = made.json["id"].as_str().expect("an id").to_string();
    assert!(key.starts_with("pal_"), "{key}");
    assert_eq!(made.json["name"], "ci pipeline");
    assert_eq!(made.json["user"], "otto");

    let me = send_as(&app, with_key(TestRequest::get().uri("/v2/user/me"), &key)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(
        (me.json["user"].clone(), me.json["api_key"].clone()),
        (json!("otto"), json!(id))
    );

    let mine = send_as(
        &app,
        with_key(TestRequest::get().uri("/v2/api-keys"), &operator),
    )
    .await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(mine.json["total"], 2, "otto's two keys: {}", mine.json);
    assert!(!contains(&mine.raw, &key[4..]), "a key is shown once");
    assert!(!contains(&mine.raw, &crate::auth::token::hash_secret(&key)));
    assert!(mine.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|k| k["user"] == "otto"));
    let all = send(&app, TestRequest::get().uri("/v2/api-keys")).await;
    assert_eq!(
        all.json["total"], 4,
        "an admin sees every key: {}",
        all.json
    );

    let r = send_as(
        &app,
        with_key(
            TestRequest::delete().uri(&format!("/v2/api-keys/{id}")),
            &viewer,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    let r = send_as(
        &app,
        with_key(
            TestRequest::delete().uri("/v2/api-keys/no-such-key"),
            &operator,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send_as(
        &app,
        with_key(
            TestRequest::delete().uri(&format!("/v2/api-keys/{id}")),
            &operator,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);

    let r = send_as(&app, with_key(TestRequest::get().uri("/v2/user/me"), &key)).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a revoked key is refused"
    );
    let listed = send_as(
        &app,
        with_key(TestRequest::get().uri("/v2/api-keys"), &operator),
    )
    .await;
    let revoked = listed.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|k| k["id"] == id.as_str())
        .cloned()
        .expect("the revoked key is still listed");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");

    let bad = send_as(
        &app,
        with_key(TestRequest::post().uri("/v2/api-keys"), &operator).set_json(json!({"name": ""})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[actix_web::test]
async fn mutating_calls_and_logins_are_audited_reads_and_anonymous_calls_are_not() {
    use crate::auth::Role;
    let st = state().await;
    let viewer = key_for(&st, "vera", Role::Viewer).await;
    let app = test::init_service(app(st.clone())).await;

    let r = send(
        &app,
        TestRequest::post()
            .uri("/v2/clouds")
            .set_json(keys_cloud_body("a")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = send_as(
        &app,
        with_key(TestRequest::post().uri("/v2/clouds"), &viewer).set_json(keys_cloud_body("v")),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    send(&app, TestRequest::get().uri("/v2/clouds")).await;
    send_as(
        &app,
        TestRequest::post()
            .uri("/v2/clouds")
            .set_json(keys_cloud_body("anon")),
    )
    .await;
    send_as(
        &app,
        TestRequest::post()
            .uri("/v2/public/user/login")
            .set_json(json!({"username": "mallory", "password": "guess"})),
    )
    .await;

    let log = send(&app, TestRequest::get().uri("/v2/audit?limit=10")).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.json);
    assert_eq!(log.json["total"], 3, "{}", log.json);
    let items = log.json["items"].as_array().expect("items");
    let row = |i: usize| {
        let e = &items[i];
        (
            e["principal"].as_str().unwrap_or("").to_string(),
            e["action"].as_str().unwrap_or("").to_string(),
            e["client"].as_str().unwrap_or("").to_string(),
            e["status"].as_u64().unwrap_or(0),
        )
    };
    assert_eq!(
        row(0),
        (
            "mallory".into(),
            "POST /v2/public/user/login".into(),
            "192.0.2.1".into(),
            401
        )
    );
    let (who, action, _, status) = row(1);
    assert!(who.starts_with("vera (key "), "{who}");
    assert_eq!((action.as_str(), status), ("POST /v2/clouds", 403));
    let (who, action, client, status) = row(2);
    assert!(who.starts_with("bootstrap (key boot-"), "{who}");
    assert_eq!(
        (action.as_str(), client.as_str(), status),
        ("POST /v2/clouds", "192.0.2.1", 201)
    );
    assert_eq!(items[2]["target"], "/v2/clouds");
    assert!(items[2]["at"].is_string());
    assert!(!contains(&log.raw, "guess"), "no password in the audit log");
    let r = send(&app, TestRequest::get().uri("/v2/audit?limit=0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[actix_web::test]
async fn every_list_pages_sorts_and_answers_alike() {
    let st = state().await;
    let seeded = seed_resources(&st).await;
    let app = test::init_service(app(st.clone())).await;
    let lists = [
        ("/v2/clouds", "name"),
        ("/v2/resources", "name"),
        ("/v2/insights", "severity"),
        (
            "/v2/insights/aws-ec2-missing-owner-tag/findings",
            "resource",
        ),
        ("/v2/jobs/dead", "finished_at"),
        ("/v2/cluster/nodes", "node"),
    ];
    for (list, field) in lists {
        let page = send(
            &app,
            TestRequest::get().uri(&format!("{list}?limit=2&offset=1&sort=-{field}")),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{list}: {}", page.json);
        let keys: Vec<&str> = page
            .json
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["items", "limit", "offset", "total"], "{list}");
        assert_eq!(
            (page.json["limit"].as_u64(), page.json["offset"].as_u64()),
            (Some(2), Some(1))
        );
        assert!(page.json["items"].as_array().is_some_and(|i| i.len() <= 2));

        for bad in ["properties", "-credentials", "name;drop"] {
            let r = send(&app, TestRequest::get().uri(&format!("{list}?sort={bad}"))).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{list}?sort={bad}");
            assert_eq!(r.json["code"], "bad_sort", "{list}?sort={bad}");
        }
        let r = send(&app, TestRequest::get().uri(&format!("{list}?limit=1001"))).await;
        assert_eq!(r.json["code"], "invalid_parameter", "{list}");
    }

    // resources: sorted by the store, across pages
    let mut names: Vec<String> = seeded
        .iter()
        .filter(|r| r.cloud.as_str() == "c1")
        .map(|r| r.name.clone())
        .collect();
    names.sort();
    names.reverse();
    let mut got = Vec::new();
    for offset in [0, 4, 8] {
        let page = send(
            &app,
            TestRequest::get().uri(&format!(
                "/v2/resources?cloud=c1&sort=-name&limit=4&offset={offset}"
            )),
        )
        .await;
        assert_eq!(page.json["total"], names.len());
        for r in page.json["items"].as_array().expect("items") {
            got.push(r["name"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(got, names);

    // clouds and insights: sorted in memory, the same way
    let clouds = send(&app, TestRequest::get().uri("/v2/clouds?sort=-id")).await;
    let ids: Vec<&str> = clouds.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["c2", "c1"]);
    let insights = send(
        &app,
        TestRequest::get().uri("/v2/insights?sort=severity&limit=1000"),
    )
    .await;
    let rank = |s: &str| {
        ["low", "medium", "high", "critical"]
            .iter()
            .position(|x| *x == s)
    };
    let severities: Vec<Option<usize>> = insights.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| rank(i["severity"].as_str().unwrap_or_default()))
        .collect();
    assert!(severities.iter().all(Option::is_some));
    assert!(
        severities.windows(2).all(|w| w[0] <= w[1]),
        "{severities:?}"
    );
    let high = send(
        &app,
        TestRequest::get().uri("/v2/insights?severity=high&type=aws.s3.bucket"),
    )
    .await;
    assert!(high.json["items"]
        .as_array()
        .is_some_and(|i| i.iter().all(|x| x["severity"] == "high"
            && x["resource_types"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("aws.s3.bucket"))))));
    // the dead letters have one order only
    let asc = send(
        &app,
        TestRequest::get().uri("/v2/jobs/dead?sort=finished_at"),
    )
    .await;
    assert_eq!(asc.json["code"], "bad_sort");
}

#[actix_web::test]
async fn a_base_path_serves_every_route_under_it_and_nothing_else() {
    let mut st = state().await;
    st.proxy.base_path = "/palisade".into();
    let app = test::init_service(app(st)).await;
    for uri in [
        "/palisade/healthz",
        "/palisade/v2/clouds",
        "/palisade/v2/openapi.json",
    ] {
        let r = send(&app, TestRequest::get().uri(uri)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.json);
    }
    let doc = send(&app, TestRequest::get().uri("/palisade/v2/openapi.json")).await;
    assert_eq!(doc.json["servers"][0]["url"], "/palisade");
    for uri in [
        "/healthz",
        "/v2/clouds",
        "/palisade/v2/nowhere",
        "/palisadex/healthz",
    ] {
        let r = send(&app, TestRequest::get().uri(uri)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.json["code"], "not_found", "{uri}");
    }
    let r = send(&app, TestRequest::delete().uri("/palisade/v2/clouds")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.allow.as_deref(), Some("GET, POST"));
}

#[actix_web::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    use super::forwarded::TrustedProxies;
    let mut st = state().await;
    st.proxy.trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().expect("net")]);
    // a probe route that answers what the server believes
    let app = test::init_service(actix_web::App::new().configure(super::configure(st)).route(
        "/whoami",
        actix_web::web::get().to(|req: actix_web::HttpRequest| async move {
            format!("{} {}", super::client_addr(&req), super::is_https(&req))
        }),
    ))
    .await;
    let ask = |peer: &str| {
        TestRequest::get()
            .uri("/whoami")
            .peer_addr(format!("{peer}:5000").parse().expect("peer"))
            .insert_header(("X-Forwarded-For", "203.0.113.9, 10.1.1.1"))
            .insert_header(("X-Forwarded-Proto", "https"))
    };
    let trusted = send(&app, ask("10.0.0.2")).await;
    assert_eq!(trusted.raw, "203.0.113.9 true");
    let spoofed = send(&app, ask("198.51.100.4")).await;
    assert_eq!(spoofed.raw, "198.51.100.4 false");
}

/// Status, headers and body of one request as sent (no credentials unless it carries them).
async fn raw_call<S, B>(
    app: &S,
    req: TestRequest,
) -> (StatusCode, actix_web::http::header::HeaderMap, Bytes)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut req = req.to_request();
    req.head_mut().peer_addr = Some(PEER.parse().expect("peer"));
    let res = test::call_service(app, req).await;
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, test::read_body(res).await)
}

#[actix_web::test]
async fn gui_assets_are_open_typed_cached_by_etag_and_locked_down() {
    let app = test::init_service(app(state().await)).await;
    for (uri, content_type, needle) in [
        (
            "/ui/",
            "text/html; charset=utf-8",
            "<script type=\"module\" src=\"app.js\">",
        ),
        (
            "/ui/index.html",
            "text/html; charset=utf-8",
            "<main id=\"main\"",
        ),
        ("/ui/app.css", "text/css; charset=utf-8", ".topbar"),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "import * as api from './api.js'",
        ),
        (
            "/ui/api.js",
            "text/javascript; charset=utf-8",
            "X-CSRF-Token",
        ),
        (
            "/ui/dom.js",
            "text/javascript; charset=utf-8",
            "createTextNode",
        ),
        (
            "/ui/pages.js",
            "text/javascript; charset=utf-8",
            "v2/resource-counts",
        ),
    ] {
        let (status, headers, body) = raw_call(&app, TestRequest::get().uri(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri} is open");
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(h("content-type"), content_type, "{uri}");
        assert!(contains(&body, needle), "{uri} holds {needle:?}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{uri}");
        assert_eq!(h("x-frame-options"), "DENY", "{uri}");
        assert_eq!(h("cache-control"), "no-cache", "{uri}");
        let csp = h("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{uri}: {csp}");
        assert!(csp.contains("script-src 'self';"), "{uri}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        // a revalidation with the same tag is a bodiless 304 that keeps the headers
        let etag = h("etag");
        assert!(etag.starts_with('"') && etag.len() > 10, "{uri}: {etag:?}");
        let (status, headers, body) = raw_call(
            &app,
            TestRequest::get()
                .uri(uri)
                .insert_header((header::IF_NONE_MATCH, etag.as_str())),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{uri}");
        assert!(body.is_empty());
        assert!(headers.contains_key("content-security-policy"));
        let (status, _, _) = raw_call(
            &app,
            TestRequest::get()
                .uri(uri)
                .insert_header((header::IF_NONE_MATCH, "\"other\"")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{uri}: another tag gets the file");
    }
    // the page runs no inline script: every <script> names a file
    let (_, _, page) = raw_call(&app, TestRequest::get().uri("/ui/")).await;
    let page = String::from_utf8_lossy(&page);
    assert_eq!(
        page.matches("<script").count(),
        page.matches("<script type=\"module\" src=").count()
    );
    assert!(
        !page.contains("onclick") && !page.contains("onload") && !page.contains("javascript:"),
        "no inline handlers"
    );
}

#[actix_web::test]
async fn the_root_redirects_to_the_gui_and_unknown_assets_are_a_json_404() {
    let app = test::init_service(app(state().await)).await;
    for uri in ["/", "/ui"] {
        let (status, headers, _) = raw_call(&app, TestRequest::get().uri(uri)).await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT, "{uri}");
        assert_eq!(
            headers.get(header::LOCATION).and_then(|v| v.to_str().ok()),
            Some("ui/"),
            "{uri}: relative, so a base path is kept"
        );
    }
    for uri in [
        "/ui/nope.js",
        "/ui/..%2F..%2Fetc%2Fpasswd",
        "/ui/INDEX.HTML",
        "/ui/app.js.map",
    ] {
        let r = send_as(&app, TestRequest::get().uri(uri)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(r.json["code"], "not_found", "{uri}: {}", r.json);
        assert!(r.json["message"].is_string());
    }
    // deeper paths are not GUI routes: the ordinary (authenticated) unknown route
    let r = send_as(&app, TestRequest::get().uri("/ui/a/b.js")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    let r = send(&app, TestRequest::get().uri("/ui/a/b.js")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
    // a write to an asset is refused like any wrong method
    let r = send(&app, TestRequest::post().uri("/ui/app.js")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.json);
}

#[actix_web::test]
async fn resource_counts_by_type_for_the_estate_and_for_one_cloud() {
    let st = state().await;
    let seeded = seed_resources(&st).await;
    let app = test::init_service(app(st.clone())).await;
    let all = send(&app, TestRequest::get().uri("/v2/resource-counts")).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.json);
    let live: Vec<&Resource> = seeded.iter().filter(|r| r.deleted_at.is_none()).collect();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for r in &live {
        *want.entry(r.rtype.as_str().to_string()).or_insert(0) += 1;
    }
    let got: BTreeMap<String, u64> = all.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["type"].as_str().unwrap_or_default().to_string(),
                i["count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    assert_eq!(all.json["total"].as_u64(), Some(want.values().sum::<u64>()));
    assert_eq!(all.json["cloud"], Value::Null);

    let cloud = live[0].cloud.clone();
    let one = send(
        &app,
        TestRequest::get().uri(&format!("/v2/resource-counts?cloud={cloud}")),
    )
    .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.json);
    let n = live.iter().filter(|r| r.cloud == cloud).count() as u64;
    assert_eq!(one.json["total"].as_u64(), Some(n));
    assert_eq!(one.json["cloud"], cloud.as_str());

    let missing = send(
        &app,
        TestRequest::get().uri("/v2/resource-counts?cloud=nope"),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad = send(&app, TestRequest::get().uri("/v2/resource-counts?kind=x")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.json);
    let anonymous = send_as(&app, TestRequest::get().uri("/v2/resource-counts")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}
