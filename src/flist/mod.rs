//! Building file lists from disk (walk, sort, hard-link groups, id maps) for
//! the sending side.

pub mod build;
pub mod chmod;
pub mod filters;
pub mod idmap;
pub mod incremental;
pub mod recv;
pub mod sort;

pub use build::{build_file_list, BuildOpts, Excluder, FileList, LocalFile, NoFilter};
pub use sort::f_name_cmp;
