//! webex-bulk: bulk Webex administration from spreadsheets.
//!
//! See ARCHITECTURE.md for the map. In short: `csvin` reads a file, `header`
//! maps its columns onto a job kind's fields and the kind (`kinds`) checks
//! each row (pure); `ingest` puts the rows in the `store` (the only SQL);
//! `engine` carries them out through the kind's runner and `webex` (the
//! only HTTP) under the shared pacing of `rate` and `retry` and the shared
//! tokens of `auth`; `cli` and `app` are the command line; `sim` is the
//! bundled Webex simulator.

pub mod app;
pub mod auth;
pub mod cli;
pub mod concurrency;
pub mod csvin;
pub mod dates;
pub mod demo;
pub mod engine;
pub mod header;
pub mod ingest;
pub mod kinds;
pub mod progress;
pub mod rate;
pub mod recipe;
pub mod report;
pub mod retry;
pub mod settle;
pub mod sheet;
pub mod sim;
pub mod store;
pub mod webex;
