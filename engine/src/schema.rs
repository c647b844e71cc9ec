//! Validation against the flagd JSON schemas (placeholder).
