//! account layer (see DESIGN.md).
