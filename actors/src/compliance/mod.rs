//! Compliance: insights evaluated over stored resources. (Being written.)
