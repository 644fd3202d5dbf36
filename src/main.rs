//! The `activity-sync` binary: parse the command line, load settings, set up logging,
//! run one command and turn its outcome into an exit code.

use activity_sync::cli::{self, Cli, Command, EXIT_CONFIG};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Schema = cli.command {
        return cli::schema();
    }
    if let Command::Version = cli.command {
        return cli::version();
    }
    let settings = match cli::settings(&cli) {
        Ok(s) => s,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    activity_sync::telemetry::init(&settings);
    match &cli.command {
        Command::Serve { .. } => runtime().block_on(cli::serve(settings)),
        Command::Validate { dir, format } => cli::validate(&settings, dir.as_deref(), *format),
        Command::Sync {
            stages,
            force,
            dry_run,
            format,
        } => runtime().block_on(cli::sync(
            settings,
            (*stages).into(),
            *force,
            *dry_run,
            *format,
        )),
        Command::Plan {
            stages,
            force,
            format,
        } => runtime().block_on(cli::plan(settings, (*stages).into(), *force, *format)),
        Command::Schema => cli::schema(),
        Command::Version => cli::version(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
}
