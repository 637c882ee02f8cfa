//! KMS walker: the keys of one region with their aliases and rotation status.
//!
//! Owns: ListAliases (once per region, `Limit` 100, the most it allows) and ListKeys
//! (`Limit` 1000) paging by `NextMarker` while `Truncated`; DescribeKey per key and
//! GetKeyRotationStatus for enabled customer-managed keys only, [`DETAIL_CONCURRENCY`] keys
//! at a time.
//!
//! Must never: ask for the rotation status of an AWS-managed or disabled key (the answer
//! is not needed and costs a call); `KeyRotationEnabled` is then `null`.

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;

use palisade_proto::ResourceType;

use super::{
    into_list, is_code, take, text, AwsError, AwsSession, Emit, Found, DETAIL_CONCURRENCY,
};
use crate::harvest::HarvestError;

const TARGET: &str = "TrentService";

async fn call(
    session: &AwsSession,
    region: &str,
    action: &str,
    body: Value,
) -> Result<Value, AwsError> {
    session
        .json("kms", region, &format!("{TARGET}.{action}"), &body)
        .await
}

/// Every item under `list_key` of every page of a KMS list call.
async fn list_all(
    session: &AwsSession,
    region: &str,
    action: &str,
    limit: u32,
    list_key: &str,
) -> Result<Vec<Value>, AwsError> {
    let mut all = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut body = json!({ "Limit": limit });
        if let Some(m) = &marker {
            body["Marker"] = Value::String(m.clone());
        }
        let mut page = call(session, region, action, body).await?;
        all.extend(into_list(take(&mut page, list_key)));
        marker = next_marker(&page);
        if marker.is_none() {
            return Ok(all);
        }
    }
}

/// `aws.kms.key`: every key of the region.
pub(crate) async fn keys(
    session: &AwsSession,
    region: &str,
    emit: &mut Emit<'_>,
) -> Result<(), HarvestError> {
    let mut aliases: HashMap<String, Vec<Value>> = HashMap::new();
    for alias in list_all(session, region, "ListAliases", 100, "Aliases").await? {
        if let (Some(key), Some(name)) = (text(&alias, "TargetKeyId"), text(&alias, "AliasName")) {
            aliases
                .entry(key.to_string())
                .or_default()
                .push(Value::String(name.to_string()));
        }
    }

    let mut marker: Option<String> = None;
    loop {
        let mut body = json!({ "Limit": 1000 });
        if let Some(m) = &marker {
            body["Marker"] = Value::String(m.clone());
        }
        let mut page = call(session, region, "ListKeys", body).await?;
        let ids: Vec<String> = into_list(take(&mut page, "Keys"))
            .iter()
            .filter_map(|k| text(k, "KeyId").map(str::to_string))
            .collect();
        let mut details = stream::iter(ids)
            .map(|id| key_details(session, region, id))
            .buffer_unordered(DETAIL_CONCURRENCY);
        while let Some(meta) = details.next().await {
            if let Some(mut meta) = meta? {
                let id = text(&meta, "KeyId").unwrap_or_default().to_string();
                let names = aliases.remove(&id).unwrap_or_default();
                let name = names
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or(&id)
                    .to_string();
                meta["Aliases"] = Value::Array(names);
                let found = Found {
                    id,
                    name,
                    tags: Default::default(),
                    properties: meta,
                };
                emit.send(region, ResourceType::AwsKmsKey, found).await?;
            }
        }
        marker = next_marker(&page);
        if marker.is_none() {
            return Ok(());
        }
    }
}

/// DescribeKey's metadata plus `KeyRotationEnabled`; none when the key vanished meanwhile.
async fn key_details(
    session: &AwsSession,
    region: &str,
    id: String,
) -> Result<Option<Value>, HarvestError> {
    let mut meta = match call(session, region, "DescribeKey", json!({ "KeyId": id })).await {
        Ok(mut answer) => take(&mut answer, "KeyMetadata"),
        Err(e) if is_code(&e, &["NotFoundException"]) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if text(&meta, "KeyId").is_none() {
        return Ok(None);
    }
    let enabled_customer =
        text(&meta, "KeyManager") == Some("CUSTOMER") && text(&meta, "KeyState") == Some("Enabled");
    let rotation = if enabled_customer {
        match call(
            session,
            region,
            "GetKeyRotationStatus",
            json!({ "KeyId": id }),
        )
        .await
        {
            Ok(answer) => answer
                .get("KeyRotationEnabled")
                .cloned()
                .unwrap_or(Value::Null),
            // asymmetric, HMAC and external-store keys have no rotation status
            Err(e) if is_code(&e, &["UnsupportedOperationException", "NotFoundException"]) => {
                Value::Null
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        Value::Null
    };
    meta["KeyRotationEnabled"] = rotation;
    Ok(Some(meta))
}

/// The marker of the next page of a KMS listing; none when the listing is complete.
fn next_marker(page: &Value) -> Option<String> {
    let truncated = page
        .get("Truncated")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if truncated {
        text(page, "NextMarker").map(str::to_string)
    } else {
        None
    }
}
