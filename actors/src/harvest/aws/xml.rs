//! AWS XML responses as JSON. (Being written.)
