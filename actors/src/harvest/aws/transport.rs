//! The AWS transport: signing, credentials and dispatch. (Being written.)
