//! The built-in insights: JSON files in the rule language under `builtin/`, embedded in the
//! binary and compiled at start.
//!
//! Owns: the list of built-in insight files and the one setting they take
//! (`compliance.required_tags`, substituted for the `${compliance.required_tags}`
//! placeholder).
//!
//! Must never: express a built-in insight in Rust code: each one is data, written in the same
//! language users write custom insights in.

use serde_json::Value;

use super::rules::{substitute, Insight, InsightSpec, RuleError};
use crate::settings::ComplianceSettings;

/// Placeholder a built-in rule uses for `compliance.required_tags`.
pub const REQUIRED_TAGS_PLACEHOLDER: &str = "${compliance.required_tags}";

macro_rules! builtin_file {
    ($id:literal) => {
        ($id, include_str!(concat!("builtin/", $id, ".json")))
    };
}

/// (file name, text) of every built-in insight; the file name is the insight id.
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    builtin_file!("aws-sg-ingress-22-world"),
    builtin_file!("aws-sg-ingress-3389-world"),
    builtin_file!("aws-s3-public-acl"),
    builtin_file!("aws-s3-no-default-encryption"),
    builtin_file!("aws-ec2-missing-owner-tag"),
    builtin_file!("aws-ebs-unencrypted"),
    builtin_file!("aws-iam-user-no-mfa"),
    builtin_file!("aws-iam-console-user-no-mfa"),
    builtin_file!("aws-iam-access-key-90d"),
    builtin_file!("aws-rds-public"),
    builtin_file!("aws-rds-unencrypted"),
    builtin_file!("aws-kms-rotation-disabled"),
    builtin_file!("aws-cloudtrail-not-multi-region"),
    builtin_file!("aws-account-no-multi-region-trail"),
];

/// Parse, fill in from settings and compile every built-in insight, in file order.
pub fn compile_all(settings: &ComplianceSettings) -> Result<Vec<Insight>, RuleError> {
    let tags = Value::Array(
        settings
            .required_tags
            .iter()
            .map(|t| Value::String(t.clone()))
            .collect(),
    );
    BUILTIN_FILES
        .iter()
        .map(|(id, text)| {
            let mut spec = InsightSpec::from_json(&format!("{id}.json"), text)?;
            if spec.id != *id {
                return Err(RuleError::Parse {
                    insight: spec.id,
                    reason: format!("defined in {id}.json, whose name must be the insight id"),
                });
            }
            substitute(&mut spec.rule, REQUIRED_TAGS_PLACEHOLDER, &tags);
            Insight::compile(spec)
        })
        .collect()
}
