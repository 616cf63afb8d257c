//! The API test suite: every test starts the real server in-process on `127.0.0.1:0` with a
//! fresh SQLite file and a clock the test moves by hand, and talks to it over HTTP. The `cli`
//! and `logs` modules drive the real binary instead.

// Tests may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod admin;
mod audit;
mod browser;
mod cli;
mod cluster;
mod console;
mod console_orgs;
mod crash;
mod crash_loop;
mod db_copy;
mod demo;
mod errors;
mod forward_auth;
mod governance;
mod invalidations;
mod keys;
mod limits;
mod logs;
mod mail_faults;
mod mail_helpers;
mod me;
mod metrics;
mod notifications;
mod oauth_clients;
mod oauth_code;
mod oauth_helpers;
mod oauth_introspection;
mod oauth_metadata;
mod oauth_revocation;
mod oauth_token;
mod org_helpers;
mod org_policies;
mod org_tokens;
mod orgs;
mod personal_tokens;
mod proxies;
mod reference;
mod scim;
mod sessions;
mod slow_clients;
mod sso;
mod storage_faults;
mod verifier;
mod warm;
