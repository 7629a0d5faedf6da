//! Throwaway PostgreSQL databases for tests (feature `testing`).
//!
//! [`TestPostgres::start`] gives every test a database of its own:
//! - when `FORGEAI_TEST_DATABASE_URL` is set (as in CI), a fresh database on that server,
//!   dropped afterwards (the URL's user needs the CREATEDB privilege);
//! - otherwise a private server: `initdb` into a temporary directory, listening on a free
//!   loopback port and on a unix socket in that directory, stopped and removed afterwards.
//!   As root the server runs as the user `postgres` (or `nobody`), since PostgreSQL refuses
//!   to run as root.
//!
//! These are test fixtures: they panic, with the reason, when a database cannot be set up.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;

/// Names a PostgreSQL server to use instead of starting one.
pub const DATABASE_URL_VAR: &str = "FORGEAI_TEST_DATABASE_URL";

/// A PostgreSQL database that exists until this value is dropped.
pub struct TestPostgres {
    url: String,
    /// The database to drop from a server given by `FORGEAI_TEST_DATABASE_URL`.
    on_shared_server: Option<SharedDatabase>,
    /// Held for its `Drop`, which stops the private server.
    _private_server: Option<LocalServer>,
}

struct SharedDatabase {
    admin_url: String,
    name: String,
}

/// A server whose data directory and unix socket live in `dir`; stopped when dropped.
struct LocalServer {
    pg_ctl: PathBuf,
    run_as: Option<String>,
    running: bool,
    dir: TempDir,
}

impl TestPostgres {
    /// Provides an empty database. Blocks while a local server starts (about a second).
    pub async fn start() -> TestPostgres {
        match std::env::var(DATABASE_URL_VAR).ok().filter(|url| !url.is_empty()) {
            Some(admin_url) => {
                let name = format!("forgeai_test_{}", uuid::Uuid::new_v4().simple());
                create_database(&admin_url, &name).await;
                TestPostgres {
                    url: with_database(&admin_url, &name),
                    on_shared_server: Some(SharedDatabase { admin_url, name }),
                    _private_server: None,
                }
            }
            None => {
                let (server, port) = LocalServer::start();
                let admin_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
                create_database(&admin_url, "forgeai_test").await;
                TestPostgres {
                    url: with_database(&admin_url, "forgeai_test"),
                    on_shared_server: None,
                    _private_server: Some(server),
                }
            }
        }
    }

    /// `postgres://` URL of the database, for `Store::connect`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let Some(SharedDatabase { admin_url, name }) = self.on_shared_server.take() else {
            return;
        };
        // Drop cannot await, and may run inside a runtime that cannot block: drop the
        // database from a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url).await.map_err(|err| err.to_string())?;
                // FORCE ends the connections the test's pool may still hold.
                conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await
                    .map_err(|err| err.to_string())?;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("could not drop the test database: {err}");
        }
    }
}

impl LocalServer {
    fn start() -> (LocalServer, u16) {
        let initdb = find_pg_bin("initdb");
        let pg_ctl = find_pg_bin("pg_ctl");
        let dir = tempfile::Builder::new()
            .prefix("forgeai-pg-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"));
        let run_as = server_user();
        if let Some(user) = &run_as {
            let (uid, gid) = (id_of(user, "-u"), id_of(user, "-g"));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|err| panic!("cannot hand {} to {user}: {err}", dir.path().display()));
        }
        let mut server = LocalServer {
            pg_ctl,
            run_as,
            running: false,
            dir,
        };
        run(as_user(&server.run_as, &initdb)
            .arg("--pgdata")
            .arg(server.data())
            .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"]));
        // The free port is only free until someone else takes it: retry with another.
        let mut last_failure = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = server.dir.path().join("server.log");
            let options = format!(
                "-h 127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off",
                server.dir.path().display()
            );
            let output = as_user(&server.run_as, &server.pg_ctl)
                .arg("start")
                .arg("--pgdata")
                .arg(server.data())
                .arg("--wait")
                .arg("--log")
                .arg(&log)
                .arg("-o")
                .arg(options)
                .output()
                .unwrap_or_else(|err| panic!("cannot run {}: {err}", server.pg_ctl.display()));
            if output.status.success() {
                server.running = true;
                return (server, port);
            }
            last_failure = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("PostgreSQL did not start; its last log:\n{last_failure}");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        // Immediate: the data is thrown away, so there is nothing to flush.
        let stopped = as_user(&self.run_as, &self.pg_ctl)
            .arg("stop")
            .arg("--pgdata")
            .arg(self.data())
            .args(["--mode=immediate", "--wait"])
            .output();
        match stopped {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!("pg_ctl stop failed: {}", String::from_utf8_lossy(&output.stderr)),
            Err(err) => eprintln!("cannot run pg_ctl stop: {err}"),
        }
    }
}

async fn create_database(admin_url: &str, name: &str) {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the test server: {err}"));
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap_or_else(|err| panic!("cannot create the test database {name}: {err}"));
    // Closing politely keeps "unexpected EOF" noise out of the server log.
    let _ = conn.close().await;
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        panic!("{DATABASE_URL_VAR} is not a URL: {url:?}");
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, format!("?{query}")),
        None => (rest, String::new()),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    format!("{scheme}://{authority}/{name}{query}")
}

/// PostgreSQL refuses to run as root, so root hands the server to an unprivileged user.
fn server_user() -> Option<String> {
    if output_of(Command::new("id").arg("-u")) != "0" {
        return None;
    }
    let user = if Command::new("id")
        .arg("postgres")
        .output()
        .is_ok_and(|output| output.status.success())
    {
        "postgres"
    } else {
        "nobody"
    };
    Some(user.to_owned())
}

fn id_of(user: &str, flag: &str) -> u32 {
    let id = output_of(Command::new("id").args([flag, user]));
    id.parse()
        .unwrap_or_else(|_| panic!("`id {flag} {user}` printed {id:?}, not a number"))
}

fn as_user(user: &Option<String>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// The PostgreSQL binary `name`: from PATH, else from the newest of Debian's versioned
/// directories (`/usr/lib/postgresql/<major>/bin`).
fn find_pg_bin(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    let debian = || {
        std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let major: u32 = entry.file_name().to_str()?.parse().ok()?;
                let candidate = entry.path().join("bin").join(name);
                candidate.is_file().then_some((major, candidate))
            })
            .max_by_key(|(major, _)| *major)
            .map(|(_, candidate)| candidate)
    };
    on_path.or_else(debian).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's {name} was not found on PATH or in /usr/lib/postgresql; install \
             PostgreSQL (Debian: apt-get install postgresql) or set {DATABASE_URL_VAR}"
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot find a free loopback port: {err}"))
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn output_of(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
    }
}
