//! App manifest (to be written).
