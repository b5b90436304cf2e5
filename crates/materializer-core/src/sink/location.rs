//! Output locations: a local folder (the default) or an object store URL.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::SinkError;

/// S3 settings beyond what the AWS environment gives (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_PROFILE`-less
/// container and web-identity credentials, `AWS_ENDPOINT`, ...).
#[derive(Clone)]
pub struct S3Settings {
    /// Static credentials, for S3-compatible stores; otherwise the environment's.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Endpoint of an S3-compatible store (e.g. `http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow plain HTTP endpoints (S3-compatible stores on a private network).
    pub allow_http: bool,
    /// Retries of a failed request (500, 503 SlowDown, timeouts, resets).
    pub max_retries: usize,
    /// Give up retrying a request after this long.
    pub retry_timeout: Duration,
    /// First wait between retries; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            access_key_id: None,
            secret_access_key: None,
            endpoint: None,
            region: None,
            allow_http: false,
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .finish_non_exhaustive()
    }
}

/// Where a run writes: a store and a prefix inside it.
#[derive(Clone, Debug)]
pub struct OutputLocation {
    /// The location as a URL, for messages (never holds credentials).
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// The folder, when the location is on the local file system.
    pub local_root: Option<std::path::PathBuf>,
}

impl OutputLocation {
    /// `s3://bucket/prefix`, `file:///abs/folder` or a plain folder path
    /// (created when missing).
    pub fn parse(location: &str, s3: &S3Settings) -> Result<OutputLocation, SinkError> {
        let error = |message: String| SinkError::Location {
            location: location.to_string(),
            message,
        };
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(error("no bucket in the URL (s3://bucket/prefix)".into()));
            }
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(S3ConditionalPut::ETagMatch)
                .with_retry(RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: s3.initial_backoff,
                        max_backoff: s3.max_backoff,
                        base: 2.0,
                    },
                    max_retries: s3.max_retries,
                    retry_timeout: s3.retry_timeout,
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_timeout(s3.request_timeout)
                        .with_connect_timeout(Duration::from_secs(10))
                        .with_allow_http(s3.allow_http),
                );
            if let Some(endpoint) = &s3.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            if let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                builder = builder
                    .with_access_key_id(key)
                    .with_secret_access_key(secret);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if s3.allow_http {
                builder = builder.with_allow_http(true);
            }
            let store = builder.build().map_err(|e| error(e.to_string()))?;
            return Ok(OutputLocation {
                url: format!("s3://{bucket}/{}", prefix.trim_matches('/')),
                store: Arc::new(store),
                prefix: Path::from(prefix.trim_matches('/')),
                local_root: None,
            });
        }
        if let Some((scheme, _)) = location.split_once("://")
            && scheme != "file"
        {
            return Err(error(format!(
                "unsupported scheme {scheme}://; use s3://bucket/prefix, file:///folder or a folder path"
            )));
        }
        let folder = location.strip_prefix("file://").unwrap_or(location);
        let folder = FsPath::new(folder);
        std::fs::create_dir_all(folder).map_err(|e| {
            write_error(folder, e, |e| {
                error(format!("cannot create the folder: {e}"))
            })
        })?;
        let absolute = folder
            .canonicalize()
            .map_err(|e| error(format!("cannot resolve the folder: {e}")))?;
        let store =
            LocalFileSystem::new_with_prefix(&absolute).map_err(|e| error(e.to_string()))?;
        Ok(OutputLocation {
            url: format!("file://{}", absolute.display()),
            store: Arc::new(store),
            prefix: Path::default(),
            local_root: Some(absolute),
        })
    }

    /// Fails when a run could not write to this location's local folder: a
    /// folder of another user, a volume mounted read-only or a read-only root
    /// file system would otherwise fail the run at its first file, with a
    /// bare "Permission denied". Object stores are not probed: their first
    /// write checks the credentials.
    pub fn check_writable(&self) -> Result<(), SinkError> {
        let Some(folder) = &self.local_root else {
            return Ok(());
        };
        // Unique per check: runs of one process may check the folder at once.
        let probe = folder.join(format!(".write-check-{:016x}", rand::random::<u64>()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| {
                write_error(folder, e, |e| SinkError::Location {
                    location: self.url.clone(),
                    message: format!("cannot write to the folder: {e}"),
                })
            })
    }
}

/// [`SinkError::NotWritable`] when `error` says that this process may not
/// write to `folder`, else `other(error)`.
fn write_error(
    folder: &FsPath,
    error: std::io::Error,
    other: impl FnOnce(std::io::Error) -> SinkError,
) -> SinkError {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    match error.kind() {
        PermissionDenied | ReadOnlyFilesystem => SinkError::NotWritable {
            folder: folder.to_path_buf(),
            user: process_user(),
            source: error,
        },
        _ => other(error),
    }
}

/// `uid 10001, gid 0`: the owner of `/proc/self` is the process's effective
/// user and group (no unsafe call to getuid).
fn process_user() -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(meta) => format!("uid {}, gid {}", meta.uid(), meta.gid()),
        Err(_) => "this process".to_string(),
    }
}
