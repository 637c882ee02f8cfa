//! The in-process queue. (Being written.)
