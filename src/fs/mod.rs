//! Filesystem access under a root: safe path resolution, metadata, temp files.
