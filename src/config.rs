//! Typed settings, layered: built-in defaults < TOML file (`--config`) < environment <
//! command-line flags. Every setting is one row of [`KEYS`]: its environment name (a
//! stable contract), its TOML key and its default. Loading reports *every* bad setting
//! at once, naming where each value came from; the binary exits 64 on any of them.
//!
//! Secrets (`database.url`, `temporal.api_key`, `admin.token`) also take a `*_FILE`
//! variant that reads the value from a file (a mounted Secret) and wins over the plain
//! variable. They are wrapped in [`Secret`], which never prints its value.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const ENV_DEFINITIONS_DIR: &str = "ACTIVITY_SYNC_DEFINITIONS_DIR";
pub const ENV_DATABASE_URL: &str = "ACTIVITY_SYNC_DATABASE_URL";
pub const ENV_OWNER: &str = "ACTIVITY_SYNC_OWNER";
pub const ENV_TEMPORAL_ADDRESS: &str = "ACTIVITY_SYNC_TEMPORAL_ADDRESS";
pub const ENV_TEMPORAL_NAMESPACE: &str = "ACTIVITY_SYNC_TEMPORAL_NAMESPACE";
pub const ENV_TEMPORAL_API_KEY: &str = "ACTIVITY_SYNC_TEMPORAL_API_KEY";
pub const ENV_TEMPORAL_TLS_CA_FILE: &str = "ACTIVITY_SYNC_TEMPORAL_TLS_CA_FILE";
pub const ENV_TEMPORAL_TLS_CERT_FILE: &str = "ACTIVITY_SYNC_TEMPORAL_TLS_CERT_FILE";
pub const ENV_TEMPORAL_TLS_KEY_FILE: &str = "ACTIVITY_SYNC_TEMPORAL_TLS_KEY_FILE";
pub const ENV_WORKFLOW_TYPE: &str = "ACTIVITY_SYNC_WORKFLOW_TYPE";
pub const ENV_TASK_QUEUE: &str = "ACTIVITY_SYNC_TASK_QUEUE";
pub const ENV_SCHEDULE_ID_PREFIX: &str = "ACTIVITY_SYNC_SCHEDULE_ID_PREFIX";
pub const ENV_TEMPORAL_CONCURRENCY: &str = "ACTIVITY_SYNC_TEMPORAL_CONCURRENCY";
pub const ENV_TEMPORAL_MAX_RPS: &str = "ACTIVITY_SYNC_TEMPORAL_MAX_RPS";
pub const ENV_LISTEN: &str = "ACTIVITY_SYNC_LISTEN";
pub const ENV_ADMIN_TOKEN: &str = "ACTIVITY_SYNC_ADMIN_TOKEN";
pub const ENV_ADMIN_ALLOW_UNAUTHENTICATED: &str = "ACTIVITY_SYNC_ADMIN_ALLOW_UNAUTHENTICATED";
pub const ENV_WATCH_MODE: &str = "ACTIVITY_SYNC_WATCH_MODE";
pub const ENV_WATCH_DEBOUNCE_MS: &str = "ACTIVITY_SYNC_WATCH_DEBOUNCE_MS";
pub const ENV_WATCH_RESCAN_SECONDS: &str = "ACTIVITY_SYNC_WATCH_RESCAN_SECONDS";
pub const ENV_INTERVAL_SECONDS: &str = "ACTIVITY_SYNC_INTERVAL_SECONDS";
pub const ENV_ON_STARTUP: &str = "ACTIVITY_SYNC_ON_STARTUP";
pub const ENV_LOCK_TIMEOUT_SECONDS: &str = "ACTIVITY_SYNC_LOCK_TIMEOUT_SECONDS";
pub const ENV_PRUNE_MAX_FRACTION: &str = "ACTIVITY_SYNC_PRUNE_MAX_FRACTION";
pub const ENV_REPORT_MAX_ERRORS: &str = "ACTIVITY_SYNC_REPORT_MAX_ERRORS";
pub const ENV_LOG_FORMAT: &str = "ACTIVITY_SYNC_LOG_FORMAT";
pub const ENV_LOG: &str = "ACTIVITY_SYNC_LOG";

/// One setting: environment name, TOML key (`section.key`), default, and whether it is
/// a secret that also has a `*_FILE` variant.
pub struct Key {
    pub env: &'static str,
    pub toml: &'static str,
    pub default: Option<&'static str>,
    pub secret: bool,
}

const fn key(env: &'static str, toml: &'static str, default: Option<&'static str>) -> Key {
    Key {
        env,
        toml,
        default,
        secret: false,
    }
}

const fn secret(env: &'static str, toml: &'static str, default: Option<&'static str>) -> Key {
    Key {
        env,
        toml,
        default,
        secret: true,
    }
}

/// Every setting, with its default.
pub const KEYS: &[Key] = &[
    key(
        ENV_DEFINITIONS_DIR,
        "definitions_dir",
        Some("/etc/activity-sync/definitions"),
    ),
    secret(
        ENV_DATABASE_URL,
        "database.url",
        Some("sqlite://activity-sync.db"),
    ),
    key(ENV_OWNER, "owner", Some("activity-sync")),
    key(
        ENV_TEMPORAL_ADDRESS,
        "temporal.address",
        Some("http://127.0.0.1:7233"),
    ),
    key(
        ENV_TEMPORAL_NAMESPACE,
        "temporal.namespace",
        Some("default"),
    ),
    secret(ENV_TEMPORAL_API_KEY, "temporal.api_key", None),
    key(ENV_TEMPORAL_TLS_CA_FILE, "temporal.tls_ca_file", None),
    key(ENV_TEMPORAL_TLS_CERT_FILE, "temporal.tls_cert_file", None),
    key(ENV_TEMPORAL_TLS_KEY_FILE, "temporal.tls_key_file", None),
    key(
        ENV_WORKFLOW_TYPE,
        "temporal.workflow_type",
        Some("RunActivityWorkflow"),
    ),
    key(ENV_TASK_QUEUE, "temporal.task_queue", Some("activity-core")),
    key(
        ENV_SCHEDULE_ID_PREFIX,
        "temporal.schedule_id_prefix",
        Some("activity:"),
    ),
    key(ENV_TEMPORAL_CONCURRENCY, "temporal.concurrency", Some("8")),
    key(ENV_TEMPORAL_MAX_RPS, "temporal.max_rps", Some("50")),
    key(ENV_LISTEN, "listen", Some("0.0.0.0:9464")),
    secret(ENV_ADMIN_TOKEN, "admin.token", None),
    key(
        ENV_ADMIN_ALLOW_UNAUTHENTICATED,
        "admin.allow_unauthenticated",
        Some("false"),
    ),
    key(ENV_WATCH_MODE, "watch.mode", Some("detect")),
    key(ENV_WATCH_DEBOUNCE_MS, "watch.debounce_ms", Some("2000")),
    key(ENV_WATCH_RESCAN_SECONDS, "watch.rescan_seconds", Some("60")),
    key(ENV_INTERVAL_SECONDS, "sync.interval_seconds", Some("0")),
    key(ENV_ON_STARTUP, "sync.on_startup", Some("true")),
    key(
        ENV_LOCK_TIMEOUT_SECONDS,
        "sync.lock_timeout_seconds",
        Some("30"),
    ),
    key(ENV_PRUNE_MAX_FRACTION, "prune.max_fraction", Some("0.5")),
    key(ENV_REPORT_MAX_ERRORS, "report.max_errors", Some("50")),
    key(ENV_LOG_FORMAT, "log.format", Some("json")),
    key(ENV_LOG, "log.filter", Some("info")),
];

/// A value that must never be printed: Debug and Display show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchMode {
    Off,
    Detect,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Text,
}

/// Every setting, typed. Serialising it redacts the secrets (used by `/admin/status`).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub definitions_dir: PathBuf,
    pub database_url: Secret,
    pub owner: String,
    pub temporal: TemporalSettings,
    pub listen: SocketAddr,
    pub admin: AdminSettings,
    pub watch: WatchSettings,
    pub sync: SyncSettings,
    pub prune_max_fraction: f64,
    pub report_max_errors: usize,
    pub log_format: LogFormat,
    pub log_filter: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TemporalSettings {
    pub address: String,
    pub namespace: String,
    pub api_key: Option<Secret>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub workflow_type: String,
    pub task_queue: String,
    pub schedule_id_prefix: String,
    pub concurrency: usize,
    /// Client-side rate limit; 0 = unlimited.
    pub max_rps: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdminSettings {
    pub token: Option<Secret>,
    pub allow_unauthenticated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchSettings {
    pub mode: WatchMode,
    #[serde(serialize_with = "millis")]
    pub debounce: Duration,
    #[serde(serialize_with = "seconds")]
    pub rescan: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncSettings {
    /// Periodic syncs; `None` = off.
    #[serde(serialize_with = "opt_seconds")]
    pub interval: Option<Duration>,
    pub on_startup: bool,
    #[serde(serialize_with = "seconds")]
    pub lock_timeout: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}
fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}
fn opt_seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.map(|d| d.as_secs()).unwrap_or(0))
}

/// Every bad setting found while loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a raw value came from, for error messages.
#[derive(Debug, Clone)]
enum Source {
    Default,
    File(PathBuf, String),
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::File(p, k) => write!(f, "`{k}` in {}", p.display()),
            Source::Env(e) => write!(f, "{e}"),
            Source::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// The raw layers, before typing: per environment name, the winning value and where it
/// came from, separately for plain values and `*_FILE` variants.
#[derive(Default)]
struct Layers {
    plain: BTreeMap<&'static str, (String, Source)>,
    file: BTreeMap<&'static str, (String, Source)>,
}

/// Command-line overrides; the highest layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub definitions_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
}

/// Loads settings from the built-in defaults, an optional TOML file, the given
/// environment and the flags. `env` is passed in (not read here) so tests stay pure.
pub fn load(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
    overrides: &Overrides,
) -> Result<Settings, ConfigErrors> {
    let mut errors = Vec::new();
    let mut layers = Layers::default();
    for k in KEYS {
        if let Some(d) = k.default {
            layers.plain.insert(k.env, (d.to_string(), Source::Default));
        }
    }
    if let Some(path) = file {
        read_toml(path, &mut layers, &mut errors);
    }
    for k in KEYS {
        if let Some(v) = env.get(k.env) {
            layers
                .plain
                .insert(k.env, (v.clone(), Source::Env(k.env.to_string())));
        }
        if k.secret {
            let file_env = format!("{}_FILE", k.env);
            if let Some(v) = env.get(&file_env) {
                layers
                    .file
                    .insert(k.env, (v.clone(), Source::Env(file_env)));
            }
        }
    }
    let flags: [(&'static str, &'static str, Option<String>); 3] = [
        (
            ENV_DEFINITIONS_DIR,
            "--definitions-dir",
            overrides
                .definitions_dir
                .as_ref()
                .map(|p| p.display().to_string()),
        ),
        (
            ENV_DATABASE_URL,
            "--database-url",
            overrides.database_url.clone(),
        ),
        (ENV_LISTEN, "--listen", overrides.listen.clone()),
    ];
    for (env_name, flag, value) in flags {
        if let Some(v) = value {
            layers.plain.insert(env_name, (v, Source::Flag(flag)));
            layers.file.remove(env_name);
        }
    }

    let mut t = Typer {
        layers: &layers,
        errors: &mut errors,
    };
    let settings = Settings {
        definitions_dir: PathBuf::from(t.string(ENV_DEFINITIONS_DIR)),
        database_url: Secret::new(t.database_url()),
        owner: t.owner(),
        temporal: TemporalSettings {
            address: t.temporal_address(),
            namespace: t.non_empty(ENV_TEMPORAL_NAMESPACE),
            api_key: t.optional_secret(ENV_TEMPORAL_API_KEY),
            tls_ca_file: t.optional(ENV_TEMPORAL_TLS_CA_FILE).map(PathBuf::from),
            tls_cert_file: t.optional(ENV_TEMPORAL_TLS_CERT_FILE).map(PathBuf::from),
            tls_key_file: t.optional(ENV_TEMPORAL_TLS_KEY_FILE).map(PathBuf::from),
            workflow_type: t.non_empty(ENV_WORKFLOW_TYPE),
            task_queue: t.non_empty(ENV_TASK_QUEUE),
            schedule_id_prefix: t.string(ENV_SCHEDULE_ID_PREFIX),
            concurrency: t.number::<usize>(ENV_TEMPORAL_CONCURRENCY, 1, 1024),
            max_rps: t.number::<u32>(ENV_TEMPORAL_MAX_RPS, 0, 100_000),
        },
        listen: t.listen(),
        admin: AdminSettings {
            token: t.optional_secret(ENV_ADMIN_TOKEN),
            allow_unauthenticated: t.boolean(ENV_ADMIN_ALLOW_UNAUTHENTICATED),
        },
        watch: WatchSettings {
            mode: t.watch_mode(),
            debounce: Duration::from_millis(t.number::<u64>(ENV_WATCH_DEBOUNCE_MS, 0, 600_000)),
            rescan: Duration::from_secs(t.number::<u64>(ENV_WATCH_RESCAN_SECONDS, 1, 86_400)),
        },
        sync: SyncSettings {
            interval: match t.number::<u64>(ENV_INTERVAL_SECONDS, 0, 7 * 86_400) {
                0 => None,
                s => Some(Duration::from_secs(s)),
            },
            on_startup: t.boolean(ENV_ON_STARTUP),
            lock_timeout: Duration::from_secs(t.number::<u64>(ENV_LOCK_TIMEOUT_SECONDS, 0, 3600)),
        },
        prune_max_fraction: t.fraction(ENV_PRUNE_MAX_FRACTION),
        report_max_errors: t.number::<usize>(ENV_REPORT_MAX_ERRORS, 1, 10_000),
        log_format: t.log_format(),
        log_filter: t.log_filter(),
    };
    let tls = &settings.temporal;
    if tls.tls_cert_file.is_some() != tls.tls_key_file.is_some() {
        errors.push(format!(
            "{ENV_TEMPORAL_TLS_CERT_FILE} and {ENV_TEMPORAL_TLS_KEY_FILE} must be set together (mTLS needs both)"
        ));
    }
    for (name, path) in [
        (ENV_TEMPORAL_TLS_CA_FILE, &tls.tls_ca_file),
        (ENV_TEMPORAL_TLS_CERT_FILE, &tls.tls_cert_file),
        (ENV_TEMPORAL_TLS_KEY_FILE, &tls.tls_key_file),
    ] {
        if let Some(p) = path
            && !p.is_file()
        {
            errors.push(format!("{name}: {} is not a readable file", p.display()));
        }
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors(errors))
    }
}

impl Settings {
    /// Settings from defaults only (tests and examples build on this).
    pub fn defaults() -> Settings {
        load(None, &BTreeMap::new(), &Overrides::default()).expect("the defaults are valid")
    }

    /// Checks that only `serve` needs: an unauthenticated admin API is refused unless
    /// the listener is loopback.
    pub fn check_serve(&self) -> Result<(), ConfigErrors> {
        if self.admin.allow_unauthenticated && !self.listen.ip().is_loopback() {
            return Err(ConfigErrors(vec![format!(
                "{ENV_ADMIN_ALLOW_UNAUTHENTICATED}=true is refused because {ENV_LISTEN}={} is not a loopback address",
                self.listen
            )]));
        }
        Ok(())
    }
}

fn read_toml(path: &Path, layers: &mut Layers, errors: &mut Vec<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("config file {}: {e}", path.display()));
            return;
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!(
                "config file {}: {}",
                path.display(),
                e.to_string().trim()
            ));
            return;
        }
    };
    let mut flat = Vec::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(inner) => {
                for (k2, v2) in inner {
                    flat.push((format!("{k}.{k2}"), v2));
                }
            }
            other => flat.push((k, other)),
        }
    }
    for (name, value) in flat {
        let (key, is_file) = match KEYS.iter().find(|k| k.toml == name) {
            Some(k) => (k, false),
            None => match KEYS
                .iter()
                .find(|k| k.secret && name.strip_suffix("_file") == Some(k.toml))
            {
                Some(k) => (k, true),
                None => {
                    errors.push(format!(
                        "config file {}: unknown setting `{name}`",
                        path.display()
                    ));
                    continue;
                }
            },
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                errors.push(format!(
                    "config file {}: `{name}` must be a string, number or boolean, not {}",
                    path.display(),
                    other.type_str()
                ));
                continue;
            }
        };
        let origin = Source::File(path.to_path_buf(), name.clone());
        if is_file {
            layers.file.insert(key.env, (text, origin));
        } else {
            layers.plain.insert(key.env, (text, origin));
        }
    }
}

struct Typer<'a> {
    layers: &'a Layers,
    errors: &'a mut Vec<String>,
}

impl Typer<'_> {
    fn raw(&self, env: &'static str) -> Option<&(String, Source)> {
        self.layers.plain.get(env)
    }

    fn bad(&mut self, env: &'static str, message: impl fmt::Display) {
        let from = self
            .raw(env)
            .map(|(_, f)| f.to_string())
            .unwrap_or_else(|| env.to_string());
        let origin = if from == env {
            String::new()
        } else {
            format!(" (from {from})")
        };
        self.errors.push(format!("{env}{origin}: {message}"));
    }

    fn optional(&self, env: &'static str) -> Option<String> {
        self.raw(env)
            .map(|(v, _)| v.clone())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, env: &'static str) -> String {
        self.raw(env).map(|(v, _)| v.clone()).unwrap_or_default()
    }

    fn non_empty(&mut self, env: &'static str) -> String {
        let v = self.string(env);
        if v.trim().is_empty() {
            self.bad(env, "must not be empty");
        }
        v
    }

    /// A secret: its `*_FILE` variant wins; the file's trailing newline is dropped.
    fn optional_secret(&mut self, env: &'static str) -> Option<Secret> {
        if let Some((path, from)) = self.layers.file.get(env) {
            return match std::fs::read_to_string(path) {
                Ok(v) => {
                    let v = v.trim_end_matches(['\n', '\r']).to_string();
                    if v.is_empty() {
                        self.errors
                            .push(format!("{from}: secret file {path} is empty"));
                        None
                    } else {
                        Some(Secret::new(v))
                    }
                }
                Err(e) => {
                    self.errors
                        .push(format!("{from}: cannot read secret file {path}: {e}"));
                    None
                }
            };
        }
        self.optional(env).map(Secret::new)
    }

    fn boolean(&mut self, env: &'static str) -> bool {
        match self.string(env).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            other => {
                let other = other.to_string();
                self.bad(env, format!("`{other}` is not a boolean (true or false)"));
                false
            }
        }
    }

    fn number<T>(&mut self, env: &'static str, min: T, max: T) -> T
    where
        T: std::str::FromStr + PartialOrd + Copy + fmt::Display,
    {
        let text = self.string(env);
        match text.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            Ok(_) => {
                self.bad(env, format!("{text} is out of range ({min} to {max})"));
                min
            }
            Err(_) => {
                self.bad(env, format!("`{text}` is not a whole number"));
                min
            }
        }
    }

    fn fraction(&mut self, env: &'static str) -> f64 {
        let text = self.string(env);
        match text.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 1.0 => v,
            _ => {
                self.bad(
                    env,
                    format!("`{text}` must be a fraction greater than 0 and at most 1"),
                );
                0.5
            }
        }
    }

    fn owner(&mut self) -> String {
        let v = self.string(ENV_OWNER);
        if let Err(m) = crate::definition::check_name(&v) {
            self.bad(ENV_OWNER, m);
        }
        v
    }

    fn database_url(&mut self) -> String {
        let before = self.errors.len();
        let url = match self.optional_secret(ENV_DATABASE_URL) {
            Some(s) => s.expose().to_string(),
            None => {
                // A secret file that could not be read was reported already.
                if self.errors.len() == before {
                    self.bad(ENV_DATABASE_URL, "must not be empty");
                }
                return String::new();
            }
        };
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !known.iter().any(|p| url.starts_with(p)) {
            // Never echo the URL: it may hold a password.
            self.bad(
                ENV_DATABASE_URL,
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        url
    }

    fn temporal_address(&mut self) -> String {
        let v = self.string(ENV_TEMPORAL_ADDRESS);
        let rest = v
            .strip_prefix("http://")
            .or_else(|| v.strip_prefix("https://"));
        match rest {
            Some(hostport) if !hostport.is_empty() && !hostport.contains(char::is_whitespace) => {}
            _ => self.bad(
                ENV_TEMPORAL_ADDRESS,
                format!("`{v}` must be a URL such as http://127.0.0.1:7233 or https://ns.tmprl.cloud:7233"),
            ),
        }
        v
    }

    fn listen(&mut self) -> SocketAddr {
        let v = self.string(ENV_LISTEN);
        v.parse().unwrap_or_else(|_| {
            self.bad(
                ENV_LISTEN,
                format!("`{v}` is not an address such as 0.0.0.0:9464"),
            );
            SocketAddr::from(([127, 0, 0, 1], 9464))
        })
    }

    fn watch_mode(&mut self) -> WatchMode {
        match self.string(ENV_WATCH_MODE).as_str() {
            "off" => WatchMode::Off,
            "detect" => WatchMode::Detect,
            "auto" => WatchMode::Auto,
            other => {
                let other = other.to_string();
                self.bad(
                    ENV_WATCH_MODE,
                    format!("`{other}` is not one of off, detect, auto"),
                );
                WatchMode::Detect
            }
        }
    }

    fn log_format(&mut self) -> LogFormat {
        match self.string(ENV_LOG_FORMAT).as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                let other = other.to_string();
                self.bad(
                    ENV_LOG_FORMAT,
                    format!("`{other}` is not one of json, text"),
                );
                LogFormat::Json
            }
        }
    }

    fn log_filter(&mut self) -> String {
        let v = self.string(ENV_LOG);
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&v) {
            self.bad(ENV_LOG, format!("`{v}` is not a valid log filter: {e}"));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let s = Settings::defaults();
        assert_eq!(
            s.definitions_dir,
            PathBuf::from("/etc/activity-sync/definitions")
        );
        assert_eq!(s.database_url.expose(), "sqlite://activity-sync.db");
        assert_eq!(s.owner, "activity-sync");
        assert_eq!(s.temporal.address, "http://127.0.0.1:7233");
        assert_eq!(s.temporal.schedule_id_prefix, "activity:");
        assert_eq!((s.temporal.concurrency, s.temporal.max_rps), (8, 50));
        assert_eq!(s.listen.to_string(), "0.0.0.0:9464");
        assert_eq!(s.watch.mode, WatchMode::Detect);
        assert_eq!(s.watch.debounce, Duration::from_millis(2000));
        assert_eq!(s.sync.interval, None);
        assert!(s.sync.on_startup);
        assert_eq!(s.prune_max_fraction, 0.5);
        assert_eq!(s.report_max_errors, 50);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn layers_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "owner = \"from-file\"\nlisten = \"127.0.0.1:1\"\n[temporal]\nnamespace = \"file-ns\"\nmax_rps = 5\n",
        )
        .unwrap();
        let e = env(&[
            (ENV_TEMPORAL_NAMESPACE, "env-ns"),
            (ENV_LISTEN, "127.0.0.1:2"),
        ]);
        let o = Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        };
        let s = load(Some(&file), &e, &o).unwrap();
        assert_eq!(s.owner, "from-file");
        assert_eq!(s.temporal.namespace, "env-ns");
        assert_eq!(s.temporal.max_rps, 5);
        assert_eq!(s.listen.to_string(), "127.0.0.1:3");
    }

    #[test]
    fn secret_file_wins_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-from-file\n").unwrap();
        let e = env(&[
            (ENV_ADMIN_TOKEN, "plain"),
            ("ACTIVITY_SYNC_ADMIN_TOKEN_FILE", token.to_str().unwrap()),
        ]);
        let s = load(None, &e, &Overrides::default()).unwrap();
        assert_eq!(s.admin.token.as_ref().unwrap().expose(), "s3cret-from-file");
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn every_bad_setting_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "bogus = 1\n[watch]\nmode = \"sometimes\"\n").unwrap();
        let e = env(&[
            (ENV_TEMPORAL_MAX_RPS, "lots"),
            (ENV_PRUNE_MAX_FRACTION, "1.5"),
            (ENV_LISTEN, "nowhere"),
            (ENV_OWNER, "Bad Owner"),
            (ENV_ON_STARTUP, "perhaps"),
            (ENV_DATABASE_URL, "mysql://u:pw@h/db"),
            ("ACTIVITY_SYNC_TEMPORAL_API_KEY_FILE", "/nonexistent/key"),
        ]);
        let errs = load(Some(&file), &e, &Overrides::default()).unwrap_err().0;
        let all = errs.join("\n");
        for needle in [
            "unknown setting `bogus`",
            ENV_WATCH_MODE,
            ENV_TEMPORAL_MAX_RPS,
            ENV_PRUNE_MAX_FRACTION,
            ENV_LISTEN,
            ENV_OWNER,
            ENV_ON_STARTUP,
            ENV_DATABASE_URL,
            "ACTIVITY_SYNC_TEMPORAL_API_KEY_FILE",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert!(!all.contains("pw@"), "the database password leaked: {all}");
        assert_eq!(errs.len(), 9, "{all}");
    }

    #[test]
    fn unauthenticated_admin_needs_loopback() {
        let e = env(&[(ENV_ADMIN_ALLOW_UNAUTHENTICATED, "true")]);
        let s = load(None, &e, &Overrides::default()).unwrap();
        assert!(s.check_serve().is_err());
        let e = env(&[
            (ENV_ADMIN_ALLOW_UNAUTHENTICATED, "true"),
            (ENV_LISTEN, "127.0.0.1:9464"),
        ]);
        assert!(
            load(None, &e, &Overrides::default())
                .unwrap()
                .check_serve()
                .is_ok()
        );
    }
}
