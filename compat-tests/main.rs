//! Interop tests: stock rsync against rrsync, compared side by side.
