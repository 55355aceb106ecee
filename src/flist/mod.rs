//! Building file lists from disk (walk, sort, hard-link groups, id maps).
