//! Logging setup: tracing to stderr, text or JSON; `RUST_LOG` overrides the level. Text logs
//! carry ANSI colours only when stderr is a terminal (not in CI logs or redirected files).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `quiet`: the all-in-one run shows its own progress, so only warnings are logged by default.
pub fn init(format: LogFormat, quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
