//! The AWS harvester. (Being written.)

pub mod account;
pub mod cloudtrail;
pub mod ec2;
pub mod iam;
pub mod kms;
pub mod ratelimit;
pub mod rds;
pub mod retry;
pub mod s3;
pub mod transport;
pub mod xml;
