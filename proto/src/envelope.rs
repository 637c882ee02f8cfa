//! The signed, versioned envelope every cluster event travels in.
//!
//! Owns: the wire layout of a cluster message. A sealed message is a two-byte big-endian
//! wire version, then the bincode (standard config) encoding of [`Envelope`], then a
//! 32-byte HMAC-SHA256 over everything before it, keyed by the cluster secret.
//! [`Envelope::open`] checks, in this order and before trusting a single byte: the length
//! (no crypto on anything too short or too long), the version, the MAC (constant time),
//! and only then decodes, refusing trailing bytes.
//!
//! Must never: decode a body whose MAC did not verify, offer an unsigned way onto the
//! wire, or judge freshness and replays (that needs a clock and memory: the bus does it
//! with `sent_at_ms`, `incarnation` and `seq`).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ClusterEvent;

type HmacSha256 = Hmac<Sha256>;

/// The wire version this build writes and reads. Version 1 was unsigned.
pub const WIRE_VERSION: u16 = 2;

/// Largest sealed message (version, body and MAC) a node sends or accepts.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// Bytes of the version prefix.
const VERSION_BYTES: usize = 2;

/// Bytes of the HMAC-SHA256 tag at the end of a sealed message.
pub const MAC_BYTES: usize = 32;

/// Why bytes off the wire were refused (or an envelope could not be sealed).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("message too short")]
    Truncated,
    #[error("message of {0} bytes exceeds the limit")]
    Oversized(usize),
    #[error("unknown wire version {0}")]
    UnknownVersion(u16),
    #[error("bad signature")]
    BadSignature,
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("message has {0} trailing bytes")]
    Trailing(usize),
    #[error("unencodable message: {0}")]
    Encode(String),
}

impl WireError {
    /// A short label for logs and metrics (`reason` of a dropped message).
    pub fn label(&self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::Oversized(_) => "oversized",
            WireError::UnknownVersion(_) => "unknown_version",
            WireError::BadSignature => "bad_signature",
            WireError::Decode(_) => "undecodable",
            WireError::Trailing(_) => "trailing",
            WireError::Encode(_) => "unencodable",
        }
    }
}

/// One event with its sender, the sender's incarnation and sequence number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node's id.
    pub node: String,
    /// Random per process start, so that a restarted node's `seq` starting again at 0 is
    /// not taken for a replay.
    pub incarnation: u64,
    /// Per-(node, incarnation) sequence number, increasing by one per message.
    pub seq: u64,
    /// Send time, milliseconds since the Unix epoch.
    pub sent_at_ms: i64,
    pub event: ClusterEvent,
}

/// A MAC keyed by `key`. HMAC takes keys of any length (long ones are hashed first), so
/// the error is never seen in practice; it is mapped rather than unwrapped all the same.
fn mac_for(key: &[u8]) -> Result<HmacSha256, hmac::digest::InvalidLength> {
    <HmacSha256 as Mac>::new_from_slice(key)
}

impl Envelope {
    /// Encode with the current wire version and sign with the cluster secret `key`.
    pub fn seal(&self, key: &[u8]) -> Result<Vec<u8>, WireError> {
        let mut out = WIRE_VERSION.to_be_bytes().to_vec();
        bincode::serde::encode_into_std_write(self, &mut out, bincode::config::standard())
            .map_err(|e| WireError::Encode(e.to_string()))?;
        let len = out.len() + MAC_BYTES;
        if len > MAX_ENVELOPE_BYTES {
            return Err(WireError::Oversized(len));
        }
        let mut mac = mac_for(key).map_err(|e| WireError::Encode(e.to_string()))?;
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        Ok(out)
    }

    /// Check and decode a sealed message off the wire, refusing anything malformed,
    /// unsigned or signed with another key.
    pub fn open(bytes: &[u8], key: &[u8]) -> Result<Envelope, WireError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(WireError::Oversized(bytes.len()));
        }
        if bytes.len() < VERSION_BYTES + MAC_BYTES {
            return Err(WireError::Truncated);
        }
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        if version != WIRE_VERSION {
            return Err(WireError::UnknownVersion(version));
        }
        let (signed, tag) = bytes.split_at(bytes.len() - MAC_BYTES);
        let mut mac = mac_for(key).map_err(|_| WireError::BadSignature)?;
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| WireError::BadSignature)?;
        let body = &signed[VERSION_BYTES..];
        let config = bincode::config::standard().with_limit::<MAX_ENVELOPE_BYTES>();
        let (env, used): (Envelope, usize) = bincode::serde::decode_from_slice(body, config)
            .map_err(|e| WireError::Decode(e.to_string()))?;
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

    const KEY: &[u8] = b"cluster secret for the unit tests";

    fn sample() -> Envelope {
        Envelope {
            node: "node-a".into(),
            incarnation: 0x0123_4567_89ab_cdef,
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

    /// Sign arbitrary bytes the way `seal` does, to build messages `seal` never would.
    fn sign(version: u16, body: &[u8], key: &[u8]) -> Vec<u8> {
        let mut out = version.to_be_bytes().to_vec();
        out.extend_from_slice(body);
        let mut mac = mac_for(key).expect("hmac key");
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        out
    }

    #[test]
    fn round_trips() {
        let bytes = sample().seal(KEY).expect("seal");
        assert_eq!(&bytes[..2], &WIRE_VERSION.to_be_bytes());
        assert_eq!(Envelope::open(&bytes, KEY), Ok(sample()));
        let reload = Envelope {
            event: ClusterEvent::ReloadConfig { node: None },
            ..sample()
        };
        let bytes = reload.seal(KEY).expect("seal");
        assert_eq!(Envelope::open(&bytes, KEY), Ok(reload));
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let bytes = sample().seal(KEY).expect("seal");
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                let got = Envelope::open(&flipped, KEY);
                assert!(got.is_err(), "byte {i} bit {bit} accepted: {got:?}");
                let expected = if i < VERSION_BYTES {
                    WireError::UnknownVersion(u16::from_be_bytes([flipped[0], flipped[1]]))
                } else {
                    WireError::BadSignature
                };
                assert_eq!(got, Err(expected), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncation_at_every_length_is_refused() {
        let bytes = sample().seal(KEY).expect("seal");
        for cut in 0..bytes.len() {
            let got = Envelope::open(&bytes[..cut], KEY);
            if cut < VERSION_BYTES + MAC_BYTES {
                assert_eq!(got, Err(WireError::Truncated), "cut at {cut}");
            } else {
                assert_eq!(got, Err(WireError::BadSignature), "cut at {cut}");
            }
        }
    }

    #[test]
    fn wrong_or_empty_key_is_refused() {
        let bytes = sample().seal(KEY).expect("seal");
        assert_eq!(
            Envelope::open(&bytes, b"another cluster's secret"),
            Err(WireError::BadSignature)
        );
        assert_eq!(Envelope::open(&bytes, b""), Err(WireError::BadSignature));
        let unsigned_looking = sample().seal(b"").expect("seal");
        assert_eq!(
            Envelope::open(&unsigned_looking, KEY),
            Err(WireError::BadSignature)
        );
    }

    #[test]
    fn unknown_version_is_refused_before_the_mac() {
        let good = sample().seal(KEY).expect("seal");
        let body = &good[VERSION_BYTES..good.len() - MAC_BYTES];
        // Correctly signed, but a version this build does not speak.
        for version in [0, 1, 3, u16::MAX] {
            assert_eq!(
                Envelope::open(&sign(version, body, KEY), KEY),
                Err(WireError::UnknownVersion(version))
            );
            // Signed with another key: still reported as the version, checked first.
            assert_eq!(
                Envelope::open(&sign(version, body, b"other"), KEY),
                Err(WireError::UnknownVersion(version))
            );
        }
    }

    #[test]
    fn oversized_is_refused_both_ways() {
        let huge = vec![0u8; MAX_ENVELOPE_BYTES + 1];
        assert_eq!(
            Envelope::open(&huge, KEY),
            Err(WireError::Oversized(MAX_ENVELOPE_BYTES + 1))
        );
        // Signed and well formed, but too long: refused on length alone.
        let big = Envelope {
            event: ClusterEvent::Heartbeat {
                node: "n".into(),
                roles: vec!["r".repeat(1000); 70],
                running_jobs: 0,
            },
            ..sample()
        };
        assert!(matches!(big.seal(KEY), Err(WireError::Oversized(_))));
        let mut body = Vec::new();
        bincode::serde::encode_into_std_write(&big, &mut body, bincode::config::standard())
            .expect("encode");
        let sealed = sign(WIRE_VERSION, &body, KEY);
        assert_eq!(
            Envelope::open(&sealed, KEY),
            Err(WireError::Oversized(sealed.len()))
        );
    }

    #[test]
    fn signed_garbage_and_trailing_bytes_are_refused_after_the_mac() {
        let good = sample().seal(KEY).expect("seal");
        let body = &good[VERSION_BYTES..good.len() - MAC_BYTES];
        let mut trailing = body.to_vec();
        trailing.push(0);
        assert_eq!(
            Envelope::open(&sign(WIRE_VERSION, &trailing, KEY), KEY),
            Err(WireError::Trailing(1))
        );
        let garbage = [0xffu8; 40];
        assert!(matches!(
            Envelope::open(&sign(WIRE_VERSION, &garbage, KEY), KEY),
            Err(WireError::Decode(_))
        ));
        assert!(matches!(
            Envelope::open(&sign(WIRE_VERSION, &[], KEY), KEY),
            Err(WireError::Decode(_))
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..300 {
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = Envelope::open(&bytes, KEY);
            if bytes.len() >= 2 {
                bytes[..2].copy_from_slice(&WIRE_VERSION.to_be_bytes());
                let _ = Envelope::open(&bytes, KEY);
            }
        }
    }
}
