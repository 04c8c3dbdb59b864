//! Arrow Flight / Flight SQL service (one gRPC port). Not built yet: see issue 5.
