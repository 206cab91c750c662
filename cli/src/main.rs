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
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
