//! End-to-end tests: the real binary, the bundled simulator, real loopback HTTP.

mod auth;
mod conformance;
mod input;
mod meetings;
mod recipes;
mod slow;
mod storage;
mod upgrade;
mod user_settings;
mod users;
mod util;
