//! `latchkey`: parses the command line, sets up logging, runs the command.

use clap::Parser as _;
use latchkey::cli::{Cli, Command};
use latchkey::config::{Config, Overrides};
use tracing_subscriber::EnvFilter;

fn init_logging(cli: &Cli) {
    // The filter and format come from the configuration when it loads; a broken configuration
    // is reported by the command itself.
    let config = Config::load(cli.config.as_deref(), &Overrides::default()).ok();
    let default = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = config.as_ref().map_or(default, |c| c.log.as_str());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(default));
    let json = config.is_some_and(|c| c.log_format == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(latchkey::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
