//! The versioned envelope every cluster event travels in.
//!
//! Layout: a two-byte big-endian wire version, then the bincode (standard config) encoding
//! of [`Envelope`]. A decoder refuses any version it does not know, any trailing bytes and
//! anything longer than [`MAX_ENVELOPE_BYTES`].

use serde::{Deserialize, Serialize};

use crate::ClusterEvent;

/// The wire version this build writes and reads.
pub const WIRE_VERSION: u16 = 1;

/// Largest encoded envelope a node accepts.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// Why bytes off the wire were refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("message too short")]
    Truncated,
    #[error("message of {0} bytes exceeds the limit")]
    Oversized(usize),
    #[error("unknown wire version {0}")]
    UnknownVersion(u16),
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("message has {0} trailing bytes")]
    Trailing(usize),
    #[error("unencodable message: {0}")]
    Encode(String),
}

/// One event with its sender and sequence number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node's id.
    pub node: String,
    /// Per-sender sequence number, increasing by one per message.
    pub seq: u64,
    /// Send time, milliseconds since the Unix epoch.
    pub sent_at_ms: i64,
    pub event: ClusterEvent,
}

impl Envelope {
    /// Encode with the current wire version.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut out = WIRE_VERSION.to_be_bytes().to_vec();
        let body = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| WireError::Encode(e.to_string()))?;
        out.extend_from_slice(&body);
        if out.len() > MAX_ENVELOPE_BYTES {
            return Err(WireError::Oversized(out.len()));
        }
        Ok(out)
    }

    /// Decode bytes off the wire, refusing anything malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(WireError::Oversized(bytes.len()));
        }
        let (version, body) = match bytes {
            [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
            _ => return Err(WireError::Truncated),
        };
        if version != WIRE_VERSION {
            return Err(WireError::UnknownVersion(version));
        }
        let config = bincode::config::standard().with_limit::<MAX_ENVELOPE_BYTES>();
        let (env, used): (Envelope, usize) = bincode::serde::decode_from_slice(body, config)
            .map_err(|e| match e {
                bincode::error::DecodeError::UnexpectedEnd { .. } => WireError::Truncated,
                other => WireError::Decode(other.to_string()),
            })?;
        if used != body.len() {
            return Err(WireError::Trailing(body.len() - used));
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CloudId, JobId, ResourceType};

    fn sample() -> Envelope {
        Envelope {
            node: "node-a".into(),
            seq: 7,
            sent_at_ms: 1_700_000_000_000,
            event: ClusterEvent::HarvestDone {
                job: JobId("j1".into()),
                cloud: CloudId("c1".into()),
                types: vec![ResourceType::AwsS3Bucket],
                resources: 12,
                deleted: 1,
            },
        }
    }

    #[test]
    fn round_trips() {
        let bytes = sample().encode().expect("encode");
        assert_eq!(Envelope::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn refuses_truncated_unknown_trailing_and_oversized() {
        let bytes = sample().encode().expect("encode");
        for cut in [0, 1, 2, bytes.len() / 2, bytes.len() - 1] {
            assert!(Envelope::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut v2 = bytes.clone();
        v2[1] = 99;
        assert_eq!(Envelope::decode(&v2), Err(WireError::UnknownVersion(99)));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(Envelope::decode(&trailing), Err(WireError::Trailing(1)));
        let huge = vec![0u8; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            Envelope::decode(&huge),
            Err(WireError::Oversized(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = Envelope::decode(&bytes);
        }
    }
}
