//! See DESIGN.md: the operator room.
