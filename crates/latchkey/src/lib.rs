//! The `latchkey` binary's library half: configuration, wiring, the operator CLI and the
//! server's life cycle. The binary (`main.rs`) only parses arguments and sets up logging, so the
//! integration tests can start the very same server in-process.

pub mod app;
pub mod cli;
pub mod config;
pub mod connections;
pub mod control;
