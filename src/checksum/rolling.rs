//! The rsync rolling checksum (upstream: checksum.c get_checksum1, match.c hash_search).
