//! wa layer (see DESIGN.md).
