//! The AWS harvester. (Being written.)

pub mod transport;
pub mod xml;
