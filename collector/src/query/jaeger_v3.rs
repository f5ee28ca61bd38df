//! The Jaeger `api_v3` subset (interop.md §3.8). Not implemented yet.
