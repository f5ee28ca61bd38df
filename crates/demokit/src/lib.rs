//! Shared plumbing of the demo services.
