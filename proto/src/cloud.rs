//! Cloud accounts: what Palisade harvests, and the credentials it uses to do so.
//!
//! Secrets live only in [`Credentials`]; its `Debug` redacts them and [`CloudView`] is the
//! form that leaves the process (API answers, logs).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::Timestamp;

crate::id::string_id!(
    /// Stable identifier of a configured cloud account (a UUID string).
    CloudId
);

/// The cloud provider behind an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Azure,
    Gcp,
    Alibaba,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Azure => "azure",
            Provider::Gcp => "gcp",
            Provider::Alibaba => "alibaba",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aws" => Ok(Provider::Aws),
            "azure" => Ok(Provider::Azure),
            "gcp" => Ok(Provider::Gcp),
            "alibaba" => Ok(Provider::Alibaba),
            other => Err(format!("unknown provider {other:?}")),
        }
    }
}

/// How Palisade authenticates to a cloud account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Credentials {
    /// The default chain: environment, shared profile, instance metadata.
    Default,
    /// Static access keys.
    Keys {
        access_key_id: String,
        secret_access_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_token: Option<String>,
    },
    /// STS AssumeRole from the default chain's identity.
    AssumeRole {
        role_arn: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
    },
}

impl Credentials {
    /// The kind name as it appears in the API (`default`, `keys`, `assume_role`).
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::Default => "default",
            Credentials::Keys { .. } => "keys",
            Credentials::AssumeRole { .. } => "assume_role",
        }
    }

    /// The non-secret description of these credentials.
    pub fn public(&self) -> serde_json::Value {
        match self {
            Credentials::Default => serde_json::json!({"kind": "default"}),
            Credentials::Keys { access_key_id, .. } => {
                serde_json::json!({"kind": "keys", "access_key_id": access_key_id})
            }
            Credentials::AssumeRole {
                role_arn,
                external_id,
            } => serde_json::json!({
                "kind": "assume_role",
                "role_arn": role_arn,
                "external_id_set": external_id.is_some(),
            }),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Default => f.write_str("Credentials::Default"),
            Credentials::Keys { access_key_id, .. } => f
                .debug_struct("Credentials::Keys")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .finish(),
            Credentials::AssumeRole { role_arn, .. } => f
                .debug_struct("Credentials::AssumeRole")
                .field("role_arn", role_arn)
                .field("external_id", &"<redacted>")
                .finish(),
        }
    }
}

/// A configured cloud account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudAccount {
    pub id: CloudId,
    pub provider: Provider,
    /// Human name chosen by the user.
    pub name: String,
    /// Regions to harvest; global services are harvested once whatever this lists.
    pub regions: Vec<String>,
    pub credentials: Credentials,
    pub created_at: Timestamp,
}

impl CloudAccount {
    /// The form of this account that may leave the process: no secrets.
    pub fn view(&self) -> CloudView {
        CloudView {
            id: self.id.clone(),
            provider: self.provider,
            name: self.name.clone(),
            regions: self.regions.clone(),
            credentials: self.credentials.public(),
            created_at: self.created_at,
        }
    }
}

/// A cloud account as the API shows it: credentials described, never revealed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CloudView {
    pub id: CloudId,
    pub provider: Provider,
    pub name: String,
    pub regions: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub credentials: serde_json::Value,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_view_never_show_secrets() {
        let c = Credentials::Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "s3cr3t-value".into(),
            session_token: Some("tok3n".into()),
        };
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("s3cr3t-value") && !dbg.contains("tok3n"),
            "{dbg}"
        );
        let public = c.public().to_string();
        assert!(!public.contains("s3cr3t-value"), "{public}");
        let role = Credentials::AssumeRole {
            role_arn: "arn:aws:iam::1:role/x".into(),
            external_id: Some("ext-secret".into()),
        };
        assert!(!format!("{role:?}").contains("ext-secret"));
        assert!(!role.public().to_string().contains("ext-secret"));
    }

    #[test]
    fn credentials_parse_from_api_shape() {
        let c: Credentials =
            serde_json::from_str(r#"{"kind":"keys","access_key_id":"a","secret_access_key":"b"}"#)
                .expect("keys parse");
        assert_eq!(c.kind(), "keys");
        let bad = serde_json::from_str::<Credentials>(r#"{"kind":"keys","access_key_id":"a"}"#);
        assert!(bad.is_err());
        let unknown = serde_json::from_str::<Credentials>(
            r#"{"kind":"keys","access_key_id":"a","secret_access_key":"b","x":1}"#,
        );
        assert!(unknown.is_err());
    }
}
