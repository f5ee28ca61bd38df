//! # Query API (query port, DESIGN.md §4)
//!
//! [`native`] serves Spanline's own API (`/v1/...`, `/health`). A Jaeger-compatible API
//! (`/api/...`, interop.md §3) and the web UI will sit beside it.

pub mod native;
