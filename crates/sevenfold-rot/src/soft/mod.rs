//! The `soft` root of trust (to be written).
