//! The Spanline collector.
