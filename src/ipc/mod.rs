//! ipc layer (see DESIGN.md).
