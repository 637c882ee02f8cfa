//! IAM walker: the account's users with their MFA devices, console password and access keys.
//!
//! Owns: ListUsers paging (API version 2010-05-08, `MaxItems` 1000, `Marker` while
//! `IsTruncated`) and the three detail calls per user (ListMFADevices, GetLoginProfile,
//! ListAccessKeys), run for [`DETAIL_CONCURRENCY`] users at a time.
//!
//! Must never: treat a missing login profile (`NoSuchEntity`) as a failure: it means the
//! user has no console password.

use futures::stream::{self, StreamExt};
use serde_json::{json, Map, Value};

use palisade_proto::resource::GLOBAL_REGION;
use palisade_proto::ResourceType;

use super::{
    into_list, is_code, normalize_lists, tag_map, take, text, AwsError, AwsSession, Emit, Found,
    ListShape, DETAIL_CONCURRENCY,
};
use crate::harvest::HarvestError;

const VERSION: &str = "2010-05-08";
const PAGE_SIZE: &str = "1000";
/// IAM is global; its calls are signed for us-east-1.
const REGION: &str = "us-east-1";

/// The members of every page of a paged IAM list call, as `(result, list)` keys.
async fn list_all(
    session: &AwsSession,
    action: &str,
    params: &[(String, String)],
    result_key: &str,
    list_key: &str,
) -> Result<Vec<Value>, AwsError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut p = params.to_vec();
        p.push(("MaxItems".to_string(), PAGE_SIZE.to_string()));
        if let Some(m) = &marker {
            p.push(("Marker".to_string(), m.clone()));
        }
        let mut page = session.query("iam", REGION, action, VERSION, &p).await?;
        let mut result = take(&mut page, result_key);
        all.extend(into_list(take(&mut result, list_key)));
        marker = next_marker(&result);
        if marker.is_none() {
            return Ok(all);
        }
    }
}

/// The `Marker` of a truncated IAM answer.
fn next_marker(result: &Value) -> Option<String> {
    let truncated = text(result, "IsTruncated") == Some("true");
    truncated
        .then(|| text(result, "Marker").map(str::to_string))
        .flatten()
}

/// Keep only `keys` of each object of a list.
fn pick(list: Vec<Value>, keys: &[&str]) -> Value {
    Value::Array(
        list.into_iter()
            .map(|mut item| {
                let mut out = Map::new();
                for key in keys {
                    if let Some(v) = item.get_mut(*key).map(Value::take) {
                        out.insert((*key).to_string(), v);
                    }
                }
                Value::Object(out)
            })
            .collect(),
    )
}

/// `aws.iam.user`: every user of the account, with its details.
pub(crate) async fn users(session: &AwsSession, emit: &mut Emit<'_>) -> Result<(), HarvestError> {
    let mut marker: Option<String> = None;
    loop {
        let mut params = vec![("MaxItems".to_string(), PAGE_SIZE.to_string())];
        if let Some(m) = &marker {
            params.push(("Marker".to_string(), m.clone()));
        }
        let mut page = session
            .query("iam", REGION, "ListUsers", VERSION, &params)
            .await?;
        let mut result = take(&mut page, "ListUsersResult");
        let users = into_list(take(&mut result, "Users"));
        let mut details = stream::iter(users)
            .map(|user| user_details(session, user))
            .buffer_unordered(DETAIL_CONCURRENCY);
        while let Some(found) = details.next().await {
            if let Some(found) = found? {
                emit.send(GLOBAL_REGION, ResourceType::AwsIamUser, found)
                    .await?;
            }
        }
        marker = next_marker(&result);
        if marker.is_none() {
            return Ok(());
        }
    }
}

/// One user with its MFA devices, login profile and access keys; none when the user was
/// deleted while the walk ran.
async fn user_details(
    session: &AwsSession,
    mut user: Value,
) -> Result<Option<Found>, HarvestError> {
    let Some(name) = text(&user, "UserName").map(str::to_string) else {
        return Ok(None);
    };
    let by_user = [("UserName".to_string(), name.clone())];

    let mfa = match list_all(
        session,
        "ListMFADevices",
        &by_user,
        "ListMFADevicesResult",
        "MFADevices",
    )
    .await
    {
        Ok(devices) => devices,
        Err(e) if is_code(&e, &["NoSuchEntity"]) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let login = match session
        .query("iam", REGION, "GetLoginProfile", VERSION, &by_user)
        .await
    {
        Ok(mut answer) => {
            let mut profile = take(
                &mut take(&mut answer, "GetLoginProfileResult"),
                "LoginProfile",
            );
            json!({
                "CreateDate": take(&mut profile, "CreateDate"),
                "PasswordResetRequired": take(&mut profile, "PasswordResetRequired"),
            })
        }
        Err(e) if is_code(&e, &["NoSuchEntity"]) => Value::Null,
        Err(e) => return Err(e.into()),
    };
    let keys = match list_all(
        session,
        "ListAccessKeys",
        &by_user,
        "ListAccessKeysResult",
        "AccessKeyMetadata",
    )
    .await
    {
        Ok(keys) => keys,
        Err(e) if is_code(&e, &["NoSuchEntity"]) => return Ok(None),
        Err(e) => return Err(e.into()),
    };

    normalize_lists(&mut user, &[("Tags", ListShape::Direct)], false);
    let tags = tag_map(&user["Tags"], "Key", "Value");
    if let Value::Object(map) = &mut user {
        map.entry("Tags")
            .or_insert_with(|| Value::Array(Vec::new()));
        map.insert(
            "MFADevices".into(),
            pick(mfa, &["SerialNumber", "EnableDate"]),
        );
        map.insert("LoginProfile".into(), login);
        map.insert(
            "AccessKeys".into(),
            pick(keys, &["AccessKeyId", "Status", "CreateDate"]),
        );
    }
    Ok(Some(Found {
        id: name.clone(),
        name,
        tags,
        properties: user,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_only_when_truncated() {
        assert_eq!(
            next_marker(&json!({"IsTruncated": "true", "Marker": "m1"})).as_deref(),
            Some("m1")
        );
        assert_eq!(
            next_marker(&json!({"IsTruncated": "false", "Marker": "m1"})),
            None
        );
        assert_eq!(
            next_marker(&json!({"IsTruncated": "true", "Marker": ""})),
            None
        );
    }

    #[test]
    fn pick_keeps_only_named_keys() {
        let v = pick(
            vec![
                json!({"UserName": "u", "AccessKeyId": "AK", "Status": "Active", "CreateDate": "d"}),
            ],
            &["AccessKeyId", "Status", "CreateDate"],
        );
        assert_eq!(
            v,
            json!([{"AccessKeyId": "AK", "Status": "Active", "CreateDate": "d"}])
        );
    }
}
