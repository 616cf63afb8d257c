//! The API test suite: every test starts the real server in-process on `127.0.0.1:0` with a
//! fresh SQLite file and a clock the test moves by hand, and talks to it over HTTP.

mod helpers;

mod cli;
mod errors;
mod me;
mod personal_tokens;
mod sessions;
