//! RFC 3161 timestamps (placeholder; being written).
