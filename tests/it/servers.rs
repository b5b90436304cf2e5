//! Real servers the tests talk to, started by the tests themselves and
//! stopped when the test process ends. None takes a port probed in advance:
//! moto, chromedriver and nakadi-server bind port 0 and say which port they
//! took, PostgreSQL listens on a Unix socket of its own.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Starts `command` in the background, tied to this process: when the test
/// process exits (however it exits), the server is killed.
pub fn spawn_tied(command: &str, log: &std::path::Path) -> Child {
    let me = std::process::id();
    let script = format!(
        "{command} & child=$!; trap 'kill $child 2>/dev/null; wait $child 2>/dev/null' EXIT TERM INT; \
         while kill -0 {me} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done"
    );
    let log = std::fs::File::create(log).unwrap();
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The port a server started on port 0 announced in `log`: the number after
/// the first `marker` written there (the server's own line saying where it
/// listens). Fails with the log when `server` ends first or nothing comes
/// within a minute.
pub fn announced_port(server: &mut Child, log: &std::path::Path, marker: &str, what: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split(marker).nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(port) = digits.parse() {
                return port;
            }
        }
        let ended = server.try_wait().unwrap();
        assert!(
            ended.is_none() && Instant::now() < deadline,
            "{what} did not say where it listens ({}); its log:\n{text}",
            ended.map_or("within a minute".to_string(), |s| s.to_string())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn logs_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("materializer-test-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An S3-protocol server (moto) over HTTP.
pub struct S3Server {
    pub endpoint: String,
    pub port: u16,
    _process: Child,
}

/// The S3 server of this test process, started on first use.
pub fn s3() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let log = logs_dir().join("moto.log");
        let mut process = spawn_tied("exec python3 -m moto.server -H 127.0.0.1 -p 0", &log);
        let port = announced_port(
            &mut process,
            &log,
            "Running on http://127.0.0.1:",
            "moto_server (pip install 'moto[server]')",
        );
        S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            _process: process,
        }
    })
}

impl S3Server {
    /// Creates a fresh bucket and returns its name.
    pub fn bucket(&self, hint: &str) -> String {
        use std::io::{Read, Write};
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{}-{}-{n}", hint.replace('_', "-"), std::process::id());
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            conn,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "creating bucket {name}: {response}"
        );
        name
    }

    pub fn settings(&self) -> materializer_core::sink::S3Settings {
        self.settings_for(&self.endpoint)
    }

    pub fn settings_for(&self, endpoint: &str) -> materializer_core::sink::S3Settings {
        materializer_core::sink::S3Settings {
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing-secret".into()),
            endpoint: Some(endpoint.to_string()),
            region: Some("eu-central-1".into()),
            allow_http: true,
            max_retries: 10,
            retry_timeout: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Environment for a child `materializer` process writing to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret".into()),
            ("AWS_REGION", "eu-central-1".into()),
            ("MATERIALIZER_S3_ENDPOINT", self.endpoint.clone()),
            ("MATERIALIZER_S3_ALLOW_HTTP", "true".into()),
        ]
    }
}

/// A fault a [`FaultyProxy`] answers a request with instead of forwarding it.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// `503 SlowDown`, as S3 throttles.
    SlowDown,
    /// `500 InternalError`.
    InternalError,
    /// The connection is closed without an answer.
    Reset,
    /// `403 AccessDenied`, as S3 refuses what the credentials may not do.
    AccessDenied,
}

/// An HTTP proxy in front of a server that answers queued faults first.
pub struct FaultyProxy {
    pub endpoint: String,
    faults: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Option<Fault>>>>,
    pub forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub injected: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// While set, every request but a read (GET, HEAD) is answered
    /// `403 AccessDenied`, as a bucket the credentials may only read.
    pub read_only: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FaultyProxy {
    /// Starts a proxy to `upstream` (e.g. `http://127.0.0.1:5000`) on the current runtime.
    pub async fn start(upstream: &str) -> FaultyProxy {
        use http_body_util::{BodyExt, Full};
        use hyper::body::{Bytes, Incoming};
        use hyper::{Request, Response};
        use std::sync::atomic::Ordering;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let proxy = FaultyProxy {
            endpoint,
            faults: Default::default(),
            forwarded: Default::default(),
            injected: Default::default(),
            read_only: Default::default(),
        };
        let upstream = upstream.trim_end_matches('/').to_string();
        let client = reqwest::Client::new();
        let faults = proxy.faults.clone();
        let forwarded = proxy.forwarded.clone();
        let injected = proxy.injected.clone();
        let read_only = proxy.read_only.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, upstream, faults, forwarded, injected, read_only) = (
                    client.clone(),
                    upstream.clone(),
                    faults.clone(),
                    forwarded.clone(),
                    injected.clone(),
                    read_only.clone(),
                );
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (client, upstream, faults, forwarded, injected) = (
                        client.clone(),
                        upstream.clone(),
                        faults.clone(),
                        forwarded.clone(),
                        injected.clone(),
                    );
                    let denied = read_only.load(Ordering::Relaxed)
                        && !matches!(*request.method(), hyper::Method::GET | hyper::Method::HEAD);
                    async move {
                        let fault = if denied {
                            Some(Fault::AccessDenied)
                        } else {
                            faults.lock().unwrap().pop_front().flatten()
                        };
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map_err(std::io::Error::other)?
                            .to_bytes();
                        if let Some(fault) = fault {
                            injected.fetch_add(1, Ordering::Relaxed);
                            let (status, code) = match fault {
                                Fault::Reset => {
                                    return Err(std::io::Error::other("injected connection reset"));
                                }
                                Fault::SlowDown => (503, "SlowDown"),
                                Fault::InternalError => (500, "InternalError"),
                                Fault::AccessDenied => (403, "AccessDenied"),
                            };
                            let xml = format!(
                                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
                            );
                            return Ok(Response::builder()
                                .status(status)
                                .header("content-type", "application/xml")
                                .body(Full::new(Bytes::from(xml)))
                                .unwrap());
                        }
                        let path = parts
                            .uri
                            .path_and_query()
                            .map(|p| p.as_str())
                            .unwrap_or("/");
                        let mut upstream_request =
                            client.request(parts.method.clone(), format!("{upstream}{path}"));
                        for (name, value) in &parts.headers {
                            if name != "host" {
                                upstream_request = upstream_request.header(name, value);
                            }
                        }
                        let answer = upstream_request
                            .body(body)
                            .send()
                            .await
                            .map_err(std::io::Error::other)?;
                        forwarded.fetch_add(1, Ordering::Relaxed);
                        let mut response = Response::builder().status(answer.status().as_u16());
                        for (name, value) in answer.headers() {
                            if name != "transfer-encoding" && name != "connection" {
                                response = response.header(name, value);
                            }
                        }
                        let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
                        Ok::<_, std::io::Error>(response.body(Full::new(bytes)).unwrap())
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        proxy
    }

    /// Queues faults for the next requests.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.faults
            .lock()
            .unwrap()
            .extend(faults.into_iter().map(Some));
    }

    /// Queues faults, each followed by `passes` requests that go through.
    pub fn inject_spaced(&self, faults: impl IntoIterator<Item = Fault>, passes: usize) {
        let mut queue = self.faults.lock().unwrap();
        for fault in faults {
            queue.push_back(Some(fault));
            queue.extend(std::iter::repeat_n(None, passes));
        }
    }
}

/// A PostgreSQL server of this test process, started on first use (initdb into
/// a scratch folder, as the `postgres` user when the tests run as root). It
/// listens on a Unix socket in that folder alone: no TCP port to collide on.
pub struct Postgres {
    /// The folder of its socket (what `PGHOST` and `psql -h` take).
    socket_dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    _process: Child,
    _dir: tempfile::TempDir,
}

fn postgres_bin() -> std::path::PathBuf {
    let mut candidates: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    if let Some(dir) = candidates
        .into_iter()
        .rev()
        .find(|d| d.join("initdb").exists())
    {
        return dir;
    }
    let which = Command::new("bash")
        .args(["-c", "dirname $(command -v initdb)"])
        .output()
        .unwrap();
    let dir = String::from_utf8_lossy(&which.stdout).trim().to_string();
    assert!(
        !dir.is_empty(),
        "PostgreSQL's initdb not found (scripts/test.sh installs it)"
    );
    std::path::PathBuf::from(dir)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `command` as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres_user(command: &str) -> String {
    if running_as_root() {
        format!("runuser -u postgres -- {command}")
    } else {
        command.to_string()
    }
}

/// The number in the name of its socket file (`.s.PGSQL.<port>`): the socket
/// is in a folder of its own, so PostgreSQL's default does not collide.
const POSTGRES_PORT: u16 = 5432;

pub fn postgres() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if running_as_root() {
            let status = Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown of the PostgreSQL folder");
        }
        let init = Command::new("bash")
            .arg("-c")
            .arg(as_postgres_user(&format!(
                "{}/initdb -D {} -A trust -U postgres -E UTF8 --locale=C.UTF-8",
                bin.display(),
                data.display()
            )))
            .output()
            .unwrap();
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let log = logs_dir().join("postgres.log");
        let process = spawn_tied(
            &as_postgres_user(&format!(
                "{}/postgres -D {} -p {POSTGRES_PORT} -k {} -c listen_addresses='' -c fsync=off -c TimeZone=UTC",
                bin.display(),
                data.display(),
                dir.path().display()
            )),
            &log,
        );
        let server = Postgres {
            socket_dir: dir.path().to_path_buf(),
            bin,
            _process: process,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.psql("postgres", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL does not answer; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    })
}

impl Postgres {
    /// The environment that makes a plain `psql` (found on PATH through
    /// `bin`, see [`Postgres::psql_path`]) connect to `database`.
    pub fn client_env(&self, database: &str) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", self.socket_dir.display().to_string()),
            ("PGPORT", POSTGRES_PORT.to_string()),
            ("PGUSER", "postgres".into()),
            ("PGDATABASE", database.into()),
            ("PGTZ", "UTC".into()),
        ]
    }

    pub fn psql_path(&self) -> std::path::PathBuf {
        let local = self.bin.join("psql");
        if local.exists() { local } else { "psql".into() }
    }

    /// Runs SQL (psql meta-commands allowed) in `database`, stopping at the
    /// first error; stdout, or stderr as the error.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        self.psql_as(database, sql, true)
    }

    /// Runs SQL as [`Postgres::psql`] does, but with psql's own default of
    /// going on after an error unless `stop_on_error`: what a script does
    /// when the user does not pass `-v ON_ERROR_STOP=1`.
    pub fn psql_as(
        &self,
        database: &str,
        sql: &str,
        stop_on_error: bool,
    ) -> Result<String, String> {
        use std::io::Write;
        let mut command = Command::new(self.psql_path());
        command.args(["-X", "-q", "-At"]);
        if stop_on_error {
            command.args(["-v", "ON_ERROR_STOP=1"]);
        }
        let mut child = command
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-U", "postgres", "-p", &POSTGRES_PORT.to_string()])
            .arg("-d")
            .arg(database)
            .env("PGTZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A `psql` session on `database` that stays open: what is written to
    /// its stdin runs as it comes, its stdout answers (unaligned, tuples
    /// only), until stdin is closed.
    pub fn session(&self, database: &str) -> Child {
        Command::new(self.psql_path())
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-U", "postgres", "-p", &POSTGRES_PORT.to_string()])
            .arg("-d")
            .arg(database)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A fresh database.
    pub fn database(&self, hint: &str) -> String {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{}_{n}", hint.replace('-', "_"));
        self.psql("postgres", &format!("CREATE DATABASE {name};"))
            .unwrap();
        name
    }
}
