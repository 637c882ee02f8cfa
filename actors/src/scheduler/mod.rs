//! The scheduler and workers. (Being written.)
