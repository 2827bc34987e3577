//! How the process ends. Every exit code is decided here, once: commands
//! return `Ok(Exit)` or a [`Failure`] that knows its class, and
//! [`super::main`] prints the failure's one-line reason and maps it.

use std::fmt;

use crate::store::{Counts, StoreError};

/// How a command ended, as the process reports it (README, "Exit codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Every row succeeded (or the command did what it was asked).
    Ok,
    /// The run finished with failed or invalid rows (`validate`: invalid
    /// rows; `verify`: a meeting missing, duplicated or unchecked).
    RowsFailed,
    /// Usage or input error: nothing was queued (or the file was already run).
    Usage,
    /// Authentication failed: the run is paused; fix the credentials and `--resume`.
    Auth,
    /// The queue database failed (disk full, I/O error, damaged file), or an
    /// internal error (a worker that crashed) stopped the run: what was
    /// recorded is kept, and `--resume` continues once the cause is fixed.
    Storage,
    /// Interrupted by Ctrl-C: `--resume` continues.
    Interrupted,
}

impl Exit {
    /// Every exit, in the README's order.
    pub const ALL: [Exit; 6] = [
        Exit::Ok,
        Exit::RowsFailed,
        Exit::Usage,
        Exit::Auth,
        Exit::Storage,
        Exit::Interrupted,
    ];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::RowsFailed => 1,
            Exit::Usage => 2,
            Exit::Auth => 3,
            Exit::Storage => 4,
            Exit::Interrupted => 130,
        }
    }

    /// A finished run: 0 when every row succeeded, else 1.
    pub fn of_counts(counts: &Counts) -> Exit {
        if counts.failed + counts.invalid == 0 {
            Exit::Ok
        } else {
            Exit::RowsFailed
        }
    }

    /// The exit a finished run recorded (its code), if it is one of ours.
    pub fn from_code(code: i64) -> Option<Exit> {
        Exit::ALL.into_iter().find(|e| i64::from(e.code()) == code)
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// Why a command stopped short: its class (which decides the exit code)
/// and the one-line reason printed on stderr.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Failure {}

/// A failure of class `exit`, for `reason`.
pub fn fail(exit: Exit, reason: impl fmt::Display) -> Failure {
    Failure {
        exit,
        reason: reason.to_string(),
    }
}

/// The queue database failed while a command was using it (after it
/// opened): its own code, never "usage error".
pub fn storage(reason: impl fmt::Display) -> Failure {
    fail(Exit::Storage, reason)
}

/// A store error after the database opened: the database failed
/// ([`Exit::Storage`]), or what was being written out of it did (usage).
impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        if e.is_database() {
            storage(e)
        } else {
            fail(Exit::Usage, e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_own_documented_code() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 130]);
        for e in Exit::ALL {
            assert_eq!(Exit::from_code(i64::from(e.code())), Some(e));
        }
        assert_eq!(Exit::from_code(7), None);
        let mut counts = Counts::default();
        assert_eq!(Exit::of_counts(&counts), Exit::Ok);
        counts.invalid = 1;
        assert_eq!(Exit::of_counts(&counts), Exit::RowsFailed);
        let store = Failure::from(StoreError::WriterGone);
        assert_eq!(store.exit, Exit::Storage, "the database failed");
        let output = Failure::from(StoreError::Output("cannot write the report".into()));
        assert_eq!(
            output.exit,
            Exit::Usage,
            "the output failed, not the database"
        );
    }
}
