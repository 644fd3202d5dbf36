//! The command line: clap definitions and one function per command. Commands parse
//! their arguments, call into the library and render; they hold no sync logic.

use crate::config::{self, ConfigErrors, Overrides, Settings};
use crate::definition::{Diagnostic, Severity};
use crate::report::{Report, Trigger};
use crate::source;
use crate::store::Store;
use crate::sync::{Engine, Request, Stages};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

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
    /// Runs the sidecar: admin API, startup sync, optional watch and interval syncs.
    Serve {
        /// Overrides ACTIVITY_SYNC_LISTEN.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Offline checks of definition files (no database, no Temporal).
    Validate {
        /// The directory to check; defaults to the configured definitions directory.
        dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
        format: ValidateFormat,
    },
    /// One sync run; prints the report. Exit 0 when clean, 1 with errors.
    Sync {
        #[command(flatten)]
        stages: StageArgs,
        /// Lift the prune guards (leaving zero owned items, removing more than
        /// prune.max_fraction). Never lifts the invalid-source guard.
        #[arg(long)]
        force: bool,
        /// Compute the plan and counts without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// A dry run that lists pending changes. Exit 0 in sync, 2 changes pending, 1 errors.
    Plan {
        #[command(flatten)]
        stages: StageArgs,
        /// Plan as `sync --force` would apply.
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Prints the JSON Schema of definition documents (for yaml-language-server).
    Schema,
    /// Prints the version.
    Version,
}

/// Which stages to run (product.md §3 defaults).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct StageArgs {
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub definitions: bool,
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub schedules: bool,
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub event_types: bool,
}

impl From<StageArgs> for Stages {
    fn from(a: StageArgs) -> Stages {
        Stages {
            definitions: a.definitions,
            event_types: a.event_types,
            schedules: a.schedules,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
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
    let listen = match &cli.command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        definitions_dir: cli.definitions_dir.clone(),
        database_url: cli.database_url.clone(),
        listen,
    };
    let settings = config::load(cli.config.as_deref(), &env, &overrides)?;
    if let Command::Serve { .. } = cli.command {
        settings.check_serve()?;
    }
    Ok(settings)
}

/// `serve`: runs until SIGTERM or SIGINT, then shuts down cleanly (exit 0).
pub async fn serve(settings: Settings) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", settings.listen);
            return ExitCode::from(1);
        }
    };
    let shutdown = async {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    match crate::sidecar::serve(Arc::new(settings), listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the sidecar failed");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
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

/// Opens the store and runs one sync (or dry run) from the command line.
async fn run_once(
    settings: Settings,
    stages: Stages,
    dry_run: bool,
    force: bool,
) -> Result<Report, ExitCode> {
    let store = Store::open(settings.database_url.expose()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    let engine = Engine::new(Arc::new(settings), store.clone());
    let request = Request {
        trigger: Trigger::Cli,
        caller: std::env::var("USER").ok().map(|u| format!("cli:{u}")),
        stages,
        dry_run,
        force,
    };
    let report = engine.run(&request).await;
    store.close().await;
    Ok(report)
}

/// `sync`: exit 0 when the run was clean, 1 when it had errors.
pub async fn sync(
    settings: Settings,
    stages: Stages,
    force: bool,
    dry_run: bool,
    format: ReportFormat,
) -> ExitCode {
    let report = match run_once(settings, stages, dry_run, force).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    print_report(&report, format);
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `plan`: exit 0 in sync, 2 with changes pending, 1 with errors.
pub async fn plan(
    settings: Settings,
    stages: Stages,
    force: bool,
    format: ReportFormat,
) -> ExitCode {
    let report = match run_once(settings, stages, true, force).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    print_report(&report, format);
    if !report.ok {
        ExitCode::from(1)
    } else if report.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_report(report: &Report, format: ReportFormat) {
    match format {
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        ReportFormat::Text => print!("{}", render_text(report)),
    }
}

/// The report for a person: a headline, counts, changes, then problems.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verb = if r.dry_run { "plan" } else { "sync" };
    let outcome = if r.ok { "ok" } else { "with errors" };
    let _ = writeln!(
        out,
        "{verb} {} ({}): {outcome} in {} ms",
        r.run_id,
        r.trigger.as_str(),
        r.duration_ms
    );
    let _ = writeln!(
        out,
        "source: {} file(s), {} document(s), {} invalid, revision {}",
        r.source.files,
        r.source.documents,
        r.source.invalid,
        r.source.revision.as_deref().unwrap_or("-")
    );
    let counts = |name: &str, c: &Option<crate::report::RowCounts>, out: &mut String| {
        let _ = match c {
            Some(c) => writeln!(
                out,
                "{name}: {} created, {} updated, {} removed, {} unchanged",
                c.created, c.updated, c.removed, c.unchanged
            ),
            None => writeln!(out, "{name}: not run"),
        };
    };
    counts("definitions", &r.definitions, &mut out);
    counts("event types", &r.event_types, &mut out);
    let _ = match &r.schedules {
        Some(c) => writeln!(
            out,
            "schedules: {} created, {} updated, {} paused, {} unpaused, {} deleted, {} held, {} unchanged",
            c.created, c.updated, c.paused, c.unpaused, c.deleted, c.held, c.unchanged
        ),
        None => writeln!(out, "schedules: not run"),
    };
    let _ = writeln!(out, "pruning: {}", r.pruning);
    if r.has_changes() {
        let _ = writeln!(
            out,
            "{}:",
            if r.dry_run {
                "pending changes"
            } else {
                "changes"
            }
        );
        for c in &r.changes {
            let mark = match c.action {
                "create" | "revive" => '+',
                "remove" | "delete" => '-',
                _ => '~',
            };
            let _ = writeln!(out, "  {mark} {} {} ({})", c.kind, c.name, c.action);
        }
        if r.changes_truncated > 0 {
            let _ = writeln!(out, "  … and {} more", r.changes_truncated);
        }
    }
    for (title, list, truncated) in [
        ("errors", &r.errors, r.errors_truncated),
        ("warnings", &r.warnings, r.warnings_truncated),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}:");
        for e in list {
            let place = match (&e.file, e.line, e.column) {
                (Some(f), Some(l), Some(c)) => format!("{f}:{l}:{c}: "),
                _ => String::new(),
            };
            let _ = writeln!(out, "  [{}] {place}{}", e.stage.as_str(), e.message);
        }
        if truncated > 0 {
            let _ = writeln!(out, "  … and {truncated} more");
        }
    }
    out
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
