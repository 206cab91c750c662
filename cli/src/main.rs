//! The `synthforge` command: one binary for the all-in-one run, the coordinator, workers, the
//! job API client, validation, inspection and the mock inference backend.

mod cmd;
mod logging;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "synthforge",
    version,
    about = "Synthetic training data at pretraining scale"
)]
struct Cli {
    /// Log format: `text` (default) or `json` (one object per line, for log collectors).
    #[arg(long, global = true, default_value = "text")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; boxing a variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run a whole job on this machine: coordinator and workers in one process over gRPC.
    Run(cmd::run::RunArgs),
    /// Run a coordinator (cluster mode).
    Coordinator(cmd::coordinator::CoordinatorArgs),
    /// Run a worker that leases tasks from a coordinator.
    Worker(cmd::worker::WorkerArgs),
    /// Submit a job to a coordinator.
    Submit(cmd::submit::SubmitArgs),
    /// Show jobs (or one job) on a coordinator.
    Status(cmd::status::StatusArgs),
    /// Cancel a job.
    Cancel(cmd::status::CancelArgs),
    /// Check a job file and print the first rendered prompts.
    Validate(cmd::validate::ValidateArgs),
    /// Print counts, token totals and samples of a finished dataset.
    Inspect(cmd::inspect::InspectArgs),
    /// An OpenAI-compatible mock inference server (tests, demos, benchmarks).
    MockBackend(synthforge_mock_backend::MockArgs),
}

fn main() -> std::process::ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Run(ref a) if !a.verbose);
    logging::init(cli.log_format, quiet);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async move {
        match cli.command {
            Command::Run(a) => cmd::run::run(a).await,
            Command::Coordinator(a) => cmd::coordinator::run(a).await,
            Command::Worker(a) => cmd::worker::run(a).await,
            Command::Submit(a) => cmd::submit::run(a).await,
            Command::Status(a) => cmd::status::run(a).await,
            Command::Cancel(a) => cmd::status::cancel(a).await,
            Command::Validate(a) => cmd::validate::run(a).await,
            Command::Inspect(a) => cmd::inspect::run(a).await,
            Command::MockBackend(a) => cmd::mock::run(a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `synthforge validate job.yaml | head -1`: when the reader of stdout (or stderr) goes away,
/// printing panics with "Broken pipe"; like other command-line tools, exit quietly instead.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// An error and its causes on one line, each message said once: a cause whose text the
/// message before it already contains (`with_context(|| format!("...: {e}"))`, or a tonic
/// status wrapping the same text) is left out.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut prev = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || prev.contains(text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text);
        prev = text.to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag and positional of every subcommand says what it is for in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let has_help = arg
                    .get_help()
                    .or(arg.get_long_help())
                    .is_some_and(|h| !h.to_string().trim().is_empty());
                if !has_help && !arg.is_hide_set() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "synthforge", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    /// Client commands do not offer the coordinator's `--tls-client-ca`.
    #[test]
    fn client_commands_do_not_list_server_tls_flags() {
        let cmd = Cli::command();
        for name in ["worker", "submit", "status", "cancel"] {
            let sub = cmd.find_subcommand(name).unwrap();
            assert!(
                sub.get_arguments()
                    .all(|a| a.get_id().as_str() != "tls_client_ca"),
                "`{name}` lists --tls-client-ca"
            );
        }
        let coord = cmd.find_subcommand("coordinator").unwrap();
        assert!(coord
            .get_arguments()
            .any(|a| a.get_id().as_str() == "tls_client_ca"));
    }

    #[test]
    fn error_chains_say_each_message_once() {
        let inner = anyhow::anyhow!("connection refused");
        let e = inner.context("cannot reach coordinator at http://x: connection refused");
        assert_eq!(
            error_chain(&e),
            "cannot reach coordinator at http://x: connection refused"
        );
        let e = anyhow::anyhow!("no such file").context("cannot read job file a.yaml");
        assert_eq!(error_chain(&e), "cannot read job file a.yaml: no such file");
        let e = anyhow::anyhow!("same").context("same").context("outer");
        assert_eq!(error_chain(&e), "outer: same");
    }
}
