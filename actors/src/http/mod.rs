//! The interface server: REST API v2. (Being written.)
