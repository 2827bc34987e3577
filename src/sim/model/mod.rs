//! The simulated organization's state and rules, without HTTP: what is stored, how a
//! change or a request budget is decided, and the counters. The handlers in
//! [`routes`](super::routes) parse requests, call into this and shape the answers.

pub(super) mod codes;
pub(super) mod directory;
pub(super) mod limiter;
pub(super) mod meetings;
pub(super) mod org;
pub(super) mod sites;
pub(super) mod state;
pub(super) mod times;
pub(super) mod tokens;
pub(super) mod xml;
