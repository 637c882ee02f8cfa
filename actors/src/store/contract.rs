//! Contract tests every store must pass. (Being written.)
