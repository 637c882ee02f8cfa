//! The supervisor. (Being written.)
