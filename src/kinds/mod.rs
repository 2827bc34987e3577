//! The job kinds: what a row of each kind of file means and how it is
//! carried out. Each kind is one module.

pub mod meetings;
pub mod users;
