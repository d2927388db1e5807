//! See DESIGN.md: the registry room.
