//! The command line: clap definitions and one function per command. Commands parse
//! their arguments, call into the library and render; they hold no sync logic.

use crate::config::{self, ConfigErrors, Overrides, Settings};
use crate::definition::{Diagnostic, Severity};
use crate::source;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code for bad configuration (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "activity-sync",
    version,
    about = "Keeps Temporal schedules and the activity database in step with definition files"
)]
pub struct Cli {
    /// TOML configuration file (defaults < file < environment < flags).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides ACTIVITY_SYNC_DEFINITIONS_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub definitions_dir: Option<PathBuf>,
    /// Overrides ACTIVITY_SYNC_DATABASE_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Offline checks of definition files (no database, no Temporal).
    Validate {
        /// The directory to check; defaults to the configured definitions directory.
        dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
        format: ValidateFormat,
    },
    /// Prints the JSON Schema of definition documents (for yaml-language-server).
    Schema,
    /// Prints the version.
    Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
    /// GitHub Actions workflow commands (annotations on the pull request).
    Github,
}

/// Loads settings from the process environment, the `--config` file and the flags.
pub fn settings(cli: &Cli) -> Result<Settings, ConfigErrors> {
    let env = std::env::vars().collect();
    let overrides = Overrides {
        definitions_dir: cli.definitions_dir.clone(),
        database_url: cli.database_url.clone(),
        listen: None,
    };
    config::load(cli.config.as_deref(), &env, &overrides)
}

/// `validate`: exit 0 when valid, 1 when any error (or the directory is unusable).
pub fn validate(settings: &Settings, dir: Option<&Path>, format: ValidateFormat) -> ExitCode {
    let dir = dir.unwrap_or(&settings.definitions_dir);
    let now = chrono::Utc::now();
    let src = match source::load(dir, now) {
        Ok(s) => s,
        Err(e) => {
            match format {
                ValidateFormat::Github => println!(
                    "::error title=activity-sync::{}",
                    escape_data(&e.to_string())
                ),
                ValidateFormat::Json => {
                    println!("{}", json!({"valid": false, "error": e.to_string()}))
                }
                ValidateFormat::Text => eprintln!("error: {e}"),
            }
            return ExitCode::from(1);
        }
    };
    let set = &src.set;
    let errors = set.errors().count();
    let warnings = set.diagnostics.len() - errors;
    let mut out = std::io::stdout().lock();
    let _ = match format {
        ValidateFormat::Text => {
            for d in &set.diagnostics {
                let _ = writeln!(out, "{d}");
            }
            writeln!(
                out,
                "{}: {} file(s), {} document(s), {} definition(s), {} event type(s): {} error(s), {} warning(s)",
                if errors == 0 { "valid" } else { "invalid" },
                set.files,
                set.documents,
                set.definitions.len(),
                set.event_types.len(),
                errors,
                warnings
            )
        }
        ValidateFormat::Json => {
            let (errs, warns): (Vec<&Diagnostic>, Vec<&Diagnostic>) = set
                .diagnostics
                .iter()
                .partition(|d| d.severity == Severity::Error);
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json!({
                    "valid": errors == 0,
                    "revision": src.revision,
                    "files": set.files,
                    "documents": set.documents,
                    "invalid": set.invalid,
                    "definitions": set.definitions.len(),
                    "event_types": set.event_types.len(),
                    "errors": errs,
                    "warnings": warns,
                }))
                .unwrap_or_default()
            )
        }
        ValidateFormat::Github => {
            for d in &set.diagnostics {
                let _ = writeln!(out, "{}", github_annotation(dir, d));
            }
            writeln!(
                out,
                "activity-sync: {errors} error(s), {warnings} warning(s) in {} file(s)",
                set.files
            )
        }
    };
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// One GitHub Actions workflow command, e.g.
/// `::error file=defs/a.yaml,line=7,col=5,title=activity-sync::message`.
pub fn github_annotation(dir: &Path, d: &Diagnostic) -> String {
    let level = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let path = dir.join(&d.file);
    let path = path.strip_prefix("./").unwrap_or(&path);
    let mut props = format!("file={}", escape_property(&path.display().to_string()));
    if d.line > 0 {
        props.push_str(&format!(",line={},col={}", d.line, d.column.max(1)));
    }
    format!(
        "::{level} {props},title=activity-sync::{}",
        escape_data(&d.message)
    )
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `schema`: the JSON Schema, pretty-printed.
pub fn schema() -> ExitCode {
    let schema = crate::definition::schema::json_schema();
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    );
    ExitCode::SUCCESS
}

pub fn version() -> ExitCode {
    println!("activity-sync {}", env!("CARGO_PKG_VERSION"));
    ExitCode::SUCCESS
}
