//! Helpers shared by the end-to-end tests: a fresh directory per test and a way to
//! run the built binary with a deadline, so a hang fails the test instead of CI.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_activity-sync");

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with `args` and only the given environment (plus PATH), failing the
/// test when it has not finished within `deadline`.
pub fn run_with(args: &[&str], env: &[(&str, &str)], deadline: Duration) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ACTIVITY_SYNC_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("activity-sync {args:?} did not finish within {deadline:?}");
        }
        std::thread::park_timeout(Duration::from_millis(10));
    };
    Output {
        code: status.code().unwrap_or(-1),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

pub fn run(args: &[&str]) -> Output {
    run_with(args, &[], Duration::from_secs(30))
}

/// A fresh temporary directory for one test.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("a temp dir"),
        }
    }
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
    pub fn str(&self) -> &str {
        self.tmp.path().to_str().expect("UTF-8 temp path")
    }
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.tmp.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write");
        p
    }
}

/// A valid ActivityDefinition document with a daily cron trigger.
pub fn cron_definition(name: &str, cron: &str) -> String {
    format!(
        "apiVersion: activity-core/v1\nkind: ActivityDefinition\nmetadata:\n  name: {name}\nspec:\n  activity: report\n  trigger:\n    cron: \"{cron}\"\n"
    )
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-definitions")
}

/// A fresh database for one test: a new PostgreSQL database (dropped afterwards) or a
/// new SQLite file.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    admin_url: String,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub const BACKENDS: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

pub fn postgres_admin_url() -> String {
    std::env::var("ACTIVITY_SYNC_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("activity_sync_test_{}", uuid::Uuid::now_v7().simple());
                let admin = sqlx::PgPool::connect(&admin_url)
                    .await
                    .expect("PostgreSQL is reachable (run the tests through scripts/test)");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await
                    .expect("create the test database");
                admin.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(b, _)| b)
                    .unwrap_or(&admin_url);
                TestDb {
                    url: format!("{base}/{name}"),
                    backend,
                    admin_url,
                    name,
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                TestDb {
                    url,
                    backend,
                    admin_url: String::new(),
                    name: String::new(),
                    _dir: Some(dir),
                }
            }
        }
    }

    /// Runs a statement on the test database (e.g. to install a failing trigger).
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
                sqlx::query(sql).execute(&pool).await.expect("statement");
                pool.close().await;
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("connect");
                sqlx::query(sql).execute(&pool).await.expect("statement");
                pool.close().await;
            }
        }
    }

    /// Every row of `table` (activity_definitions or activity_event_types), by name.
    pub async fn rows(&self, table: &str) -> Vec<StoredRow> {
        let pg = format!(
            "SELECT name, owner, {} AS enabled, removed_at IS NOT NULL AS removed, updated_at::text AS updated_at, content_hash FROM {table} ORDER BY name",
            if table == "activity_definitions" {
                "enabled"
            } else {
                "TRUE"
            }
        );
        let lite = pg.replace("::text", "").replace("TRUE", "1");
        match self.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
                let rows = sqlx::query(sqlx::AssertSqlSafe(pg))
                    .fetch_all(&pool)
                    .await
                    .expect("select");
                pool.close().await;
                rows.iter().map(StoredRow::from_pg).collect()
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("connect");
                let rows = sqlx::query(sqlx::AssertSqlSafe(lite))
                    .fetch_all(&pool)
                    .await
                    .expect("select");
                pool.close().await;
                rows.iter().map(StoredRow::from_sqlite).collect()
            }
        }
    }

    /// `(trigger, dry_run, ok, locked_at, finished_at)` of every recorded run, oldest first.
    pub async fn runs(&self) -> Vec<(String, bool, bool, Option<String>, String)> {
        let pg = "SELECT trigger, dry_run, ok, to_char(locked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') AS locked_at, to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') AS finished_at FROM activity_sync_runs ORDER BY started_at";
        let lite = "SELECT trigger, dry_run, ok, locked_at, finished_at FROM activity_sync_runs ORDER BY started_at";
        macro_rules! collect {
            ($pool:expr, $sql:expr) => {{
                let pool = $pool;
                let rows = sqlx::query($sql)
                    .fetch_all(&pool)
                    .await
                    .expect("select runs");
                pool.close().await;
                rows.iter()
                    .map(|r| {
                        use sqlx::Row;
                        (
                            r.get("trigger"),
                            r.get("dry_run"),
                            r.get("ok"),
                            r.get("locked_at"),
                            r.get("finished_at"),
                        )
                    })
                    .collect()
            }};
        }
        match self.backend {
            Backend::Postgres => {
                collect!(sqlx::PgPool::connect(&self.url).await.expect("connect"), pg)
            }
            Backend::Sqlite => collect!(
                sqlx::SqlitePool::connect(&self.url).await.expect("connect"),
                lite
            ),
        }
    }

    /// Drops a PostgreSQL test database (SQLite files go with their temp dir).
    pub async fn drop_db(self) {
        if self.backend == Backend::Postgres
            && let Ok(admin) = sqlx::PgPool::connect(&self.admin_url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&admin)
            .await;
            admin.close().await;
        }
    }
}

/// One stored row, as the tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub name: String,
    pub owner: String,
    pub enabled: bool,
    pub removed: bool,
    pub updated_at: String,
    pub hash: String,
}

impl StoredRow {
    fn from_pg(r: &sqlx::postgres::PgRow) -> StoredRow {
        use sqlx::Row;
        StoredRow {
            name: r.get("name"),
            owner: r.get("owner"),
            enabled: r.get("enabled"),
            removed: r.get("removed"),
            updated_at: r.get("updated_at"),
            hash: r.get("content_hash"),
        }
    }
    fn from_sqlite(r: &sqlx::sqlite::SqliteRow) -> StoredRow {
        use sqlx::Row;
        StoredRow {
            name: r.get("name"),
            owner: r.get("owner"),
            enabled: r.get("enabled"),
            removed: r.get("removed"),
            updated_at: r.get("updated_at"),
            hash: r.get("content_hash"),
        }
    }
}

/// `activity-sync serve` as a child process on a loopback port chosen by the OS.
/// Killed when dropped.
pub struct Serve {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Serve {
    /// Starts `serve` with only `env` (plus PATH) and waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ACTIVITY_SYNC_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("serve starts");
        let stderr = child.stderr.take().expect("piped");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("a socket address"),
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not listen; log:\n{}", log.lock().unwrap());
            }
        };
        Serve { child, addr, log }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.addr, "GET", path, &[])
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        http(self.addr, "POST", path, headers)
    }

    /// Polls `probe` every 20 ms until it returns `Some`, or fails after `deadline`.
    pub fn wait_for<T>(
        &self,
        deadline: Duration,
        what: &str,
        mut probe: impl FnMut(&Serve) -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            if started.elapsed() > deadline {
                panic!(
                    "timed out waiting for {what}; log:\n{}",
                    self.log.lock().unwrap()
                );
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self, deadline: Duration) -> i32 {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            if started.elapsed() > deadline {
                panic!(
                    "serve did not stop within {deadline:?}; log:\n{}",
                    self.log.lock().unwrap()
                );
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 request over a fresh connection; returns status and body.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Publishes `files` into `root` the way kubelet updates a ConfigMap volume: a new
/// timestamped folder, a temporary link to it renamed over `..data`, and a top-level
/// link per key (created once; they point through `..data`).
pub fn kubelet_publish(root: &Path, stamp: &str, files: &[(&str, String)]) {
    use std::os::unix::fs::symlink;
    let folder = root.join(stamp);
    std::fs::create_dir(&folder).unwrap();
    for (name, content) in files {
        std::fs::write(folder.join(name), content).unwrap();
    }
    let tmp = root.join("..data_tmp");
    symlink(stamp, &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
    for (name, _) in files {
        if std::fs::symlink_metadata(root.join(name)).is_err() {
            symlink(format!("..data/{name}"), root.join(name)).unwrap();
        }
    }
}
