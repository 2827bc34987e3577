//! The meetings job kind.

pub mod check;
pub mod verify;
