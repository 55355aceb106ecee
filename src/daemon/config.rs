//! rsyncd.conf parsing (global section, modules, `&include`, continuations).
