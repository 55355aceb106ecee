//! The rsync roles (sender, generator, receiver), transport-agnostic.
