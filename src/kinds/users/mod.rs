//! The users job kind.

pub mod check;
pub mod run;
