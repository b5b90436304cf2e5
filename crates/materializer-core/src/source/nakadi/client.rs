//! Nakadi's HTTP API as this engine uses it: event types, partitions, the
//! low-level stream, subscriptions, their streams, cursors and commits.
//!
//! Requests that are safe to repeat are retried on connection errors, 429,
//! 503 and other 5xx answers with bounded, jittered exponential backoff that
//! honours `Retry-After`. 401, 403, 404, 412 and 422 are not retried: they get
//! an error that says what was refused and why.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;

use super::auth::{AuthError, TokenSource};
use crate::source::{Cursor, Offset, PartitionInfo};

/// How this engine talks to Nakadi.
#[derive(Clone, Debug)]
pub struct NakadiSettings {
    /// Base URL, e.g. `https://nakadi.example.org`.
    pub url: String,
    pub token: Arc<TokenSource>,
    /// Events per batch the server may send.
    pub batch_limit: u32,
    /// Seconds the server may wait to fill a batch.
    pub batch_flush_timeout: Duration,
    /// Lifetime of one stream connection (0: the server's default).
    pub stream_timeout: Duration,
    /// A stream that sends nothing (not even a keep-alive) for this long is
    /// dropped and resumed.
    pub silence_timeout: Duration,
    /// Attempts without progress before a run gives up on a partition or request.
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    /// Timeout of requests that are not streams.
    pub request_timeout: Duration,
    /// Subscription streams: how long Nakadi waits for a commit (at most 60 s).
    pub commit_timeout: Duration,
}

impl NakadiSettings {
    pub fn new(url: impl Into<String>, token: TokenSource) -> NakadiSettings {
        NakadiSettings {
            url: url.into(),
            token: Arc::new(token),
            batch_limit: 1000,
            batch_flush_timeout: Duration::from_secs(1),
            stream_timeout: Duration::ZERO,
            silence_timeout: Duration::from_secs(31),
            max_retries: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            commit_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NakadiError {
    #[error("Nakadi refused the credentials (401) for {what}: {detail}; check the token")]
    Unauthorized { what: String, detail: String },
    #[error("Nakadi forbids {what} (403): {detail}")]
    Forbidden { what: String, detail: String },
    #[error("{what}: not found in Nakadi (404): {detail}")]
    NotFound { what: String, detail: String },
    #[error(
        "cursor expired: partition {partition} of {event_type} is to be read after offset {offset}, \
         but Nakadi no longer holds it (412: {detail}); the events in between were deleted before \
         they were read. Reset the topic's cursors deliberately to go on"
    )]
    CursorExpired {
        event_type: String,
        partition: String,
        offset: String,
        detail: String,
    },
    #[error("Nakadi could not process {what} (422): {detail}")]
    Unprocessable { what: String, detail: String },
    #[error(
        "{what}: no free slot (409): {detail}; another consumer holds the subscription's partitions"
    )]
    NoFreeSlot { what: String, detail: String },
    #[error("{what}: Nakadi answered {status}: {detail}")]
    Status {
        what: String,
        status: u16,
        detail: String,
    },
    #[error("{what}: {message}")]
    Transport { what: String, message: String },
    #[error(
        "{what}: cannot connect to Nakadi at {url}: {message}. Start Nakadi or the local \
         Nakadi-compatible server (nakadi-server), or check --nakadi-url (NAKADI_URL)"
    )]
    Unreachable {
        what: String,
        url: String,
        message: String,
    },
    #[error("{what}: gave up after {attempts} attempts; last error: {last}")]
    GaveUp {
        what: String,
        attempts: u32,
        last: String,
    },
    #[error("{what}: Nakadi sent something unexpected: {message}")]
    Protocol { what: String, message: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl NakadiError {
    /// Worth another attempt after a pause.
    pub fn is_retryable(&self) -> bool {
        match self {
            NakadiError::Transport { .. }
            | NakadiError::Unreachable { .. }
            | NakadiError::NoFreeSlot { .. } => true,
            NakadiError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            NakadiError::Unauthorized { .. }
            | NakadiError::Forbidden { .. }
            | NakadiError::NotFound { .. }
            | NakadiError::Unprocessable { .. }
            | NakadiError::Auth(_) => ErrorClass::Config,
            NakadiError::CursorExpired { .. } => ErrorClass::Data,
            NakadiError::NoFreeSlot { .. } => ErrorClass::Conflict,
            NakadiError::Status { .. }
            | NakadiError::Transport { .. }
            | NakadiError::Unreachable { .. }
            | NakadiError::GaveUp { .. }
            | NakadiError::Protocol { .. } => ErrorClass::SourceUnavailable,
        }
    }
}

/// Whether a request is the first a run makes of Nakadi. A connection refused
/// there means nothing listens at the URL: waiting minutes for it to appear
/// helps no one. Later, a refused connection is an outage worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contact {
    First,
    Later,
}

/// An answer that asks to wait (429/503 with `Retry-After`).
#[derive(Debug)]
pub struct Refused {
    pub error: NakadiError,
    pub retry_after: Option<Duration>,
}

impl From<NakadiError> for Refused {
    fn from(error: NakadiError) -> Self {
        Refused {
            error,
            retry_after: None,
        }
    }
}

/// Nakadi's Problem JSON.
#[derive(Deserialize, Default)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// A subscription as Nakadi describes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Subscription {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub owning_application: String,
    pub event_types: Vec<String>,
    #[serde(default = "default_consumer_group")]
    pub consumer_group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_cursors: Option<Vec<SubscriptionCursor>>,
}

fn default_consumer_group() -> String {
    "default".into()
}

/// A cursor of a subscription.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscriptionCursor {
    pub partition: String,
    pub offset: Offset,
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_token: Option<String>,
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

/// Stream parameters of one connection.
#[derive(Clone, Debug, Default)]
pub struct StreamParams {
    pub batch_limit: u32,
    pub batch_flush_timeout: Duration,
    pub stream_timeout: Duration,
    /// 0: unlimited.
    pub stream_limit: u64,
    /// Subscription streams only.
    pub max_uncommitted_events: Option<u64>,
    pub commit_timeout: Option<Duration>,
}

impl StreamParams {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![
            ("batch_limit", self.batch_limit.max(1).to_string()),
            (
                "batch_flush_timeout",
                self.batch_flush_timeout.as_secs().max(1).to_string(),
            ),
        ];
        if !self.stream_timeout.is_zero() {
            q.push((
                "stream_timeout",
                self.stream_timeout.as_secs().max(1).to_string(),
            ));
        }
        if self.stream_limit > 0 {
            q.push((
                "stream_limit",
                self.stream_limit.max(self.batch_limit as u64).to_string(),
            ));
        }
        if let Some(n) = self.max_uncommitted_events {
            q.push((
                "max_uncommitted_events",
                n.clamp(1, i32::MAX as u64).to_string(),
            ));
        }
        if let Some(t) = self.commit_timeout {
            q.push(("commit_timeout", t.as_secs().clamp(1, 60).to_string()));
        }
        q
    }
}

/// How a commit went.
#[derive(Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Some cursors were not newer than what was committed already.
    Outdated,
    /// The stream id is unknown or expired (422): commit through a new stream.
    StreamGone(String),
}

/// An HTTP client for one Nakadi.
pub struct NakadiClient {
    http: reqwest::Client,
    pub settings: NakadiSettings,
    /// Retries done, for progress and metrics.
    pub retries: Arc<AtomicU64>,
}

impl NakadiClient {
    pub fn new(settings: NakadiSettings) -> Result<NakadiClient, NakadiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| NakadiError::Transport {
                what: "creating the HTTP client".into(),
                message: e.to_string(),
            })?;
        Ok(NakadiClient {
            http,
            settings,
            retries: Arc::new(AtomicU64::new(0)),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.settings.url.trim_end_matches('/'), path)
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, NakadiError> {
        let mut builder = self
            .http
            .request(method, self.url(path))
            .header("X-Flow-Id", flow_id());
        if let Some(token) = self.settings.token.token()? {
            builder = builder.bearer_auth(token);
        }
        Ok(builder)
    }

    /// Sends a request; a non-2xx answer becomes an error saying what was refused.
    async fn send(&self, what: &str, builder: RequestBuilder) -> Result<Response, Refused> {
        let response = builder.send().await.map_err(|e| {
            if is_connection_refused(&e) {
                NakadiError::Unreachable {
                    what: what.to_string(),
                    url: self.settings.url.clone(),
                    message: describe_transport(&e),
                }
            } else {
                NakadiError::Transport {
                    what: what.to_string(),
                    message: describe_transport(&e),
                }
            }
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(refusal(what, response).await)
    }

    /// Pause before attempt `attempt` (1-based): exponential, jittered, bounded,
    /// at least what the server asked for.
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = self.settings.initial_backoff.as_millis() as f64
            * 2f64.powi(attempt.saturating_sub(1).min(16) as i32);
        let capped = base.min(self.settings.max_backoff.as_millis() as f64);
        let jittered = capped * (0.5 + rand::random::<f64>() * 0.5);
        let pause = Duration::from_millis(jittered as u64);
        retry_after.map_or(pause, |asked| pause.max(asked))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries run out.
    async fn retrying<T, F, Fut>(
        &self,
        what: &str,
        contact: Contact,
        mut attempt: F,
    ) -> Result<T, NakadiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Refused>>,
    {
        let mut failures = 0;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(refused)
                    if contact == Contact::First
                        && failures == 0
                        && matches!(refused.error, NakadiError::Unreachable { .. }) =>
                {
                    return Err(refused.error);
                }
                Err(refused) if refused.error.is_retryable() => {
                    failures += 1;
                    if failures > self.settings.max_retries {
                        return Err(NakadiError::GaveUp {
                            what: what.to_string(),
                            attempts: failures,
                            last: crate::error::report(&refused.error),
                        });
                    }
                    let pause = self.backoff(failures, refused.retry_after);
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(what, attempt = failures, pause_ms = pause.as_millis() as u64, error = %refused.error, "Nakadi request failed; retrying");
                    tokio::time::sleep(pause).await;
                }
                Err(refused) => return Err(refused.error),
            }
        }
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        path: &str,
        contact: Contact,
    ) -> Result<T, NakadiError> {
        let response = self
            .retrying(what, contact, || async {
                let builder = self
                    .request(Method::GET, path)?
                    .timeout(self.settings.request_timeout);
                self.send(what, builder).await
            })
            .await?;
        parse_json(what, response).await
    }

    /// `GET /event-types/{name}`: the event type document (category, schema).
    pub async fn event_type(&self, name: &str) -> Result<Value, NakadiError> {
        self.get_json(
            &format!("event type {name}"),
            &format!("/event-types/{}", encode(name)),
            Contact::First,
        )
        .await
    }

    /// `GET /event-types/{name}/partitions`.
    pub async fn partitions(&self, name: &str) -> Result<Vec<PartitionInfo>, NakadiError> {
        self.get_json(
            &format!("partitions of event type {name}"),
            &format!("/event-types/{}/partitions", encode(name)),
            Contact::First,
        )
        .await
    }

    /// Opens a low-level stream (`GET /event-types/{name}/events`) from `cursors`.
    /// No retries here: the caller resumes from its own position.
    pub async fn open_events(
        &self,
        event_type: &str,
        cursors: &[Cursor],
        params: &StreamParams,
    ) -> Result<Response, Refused> {
        let what = format!("stream of event type {event_type}");
        let header = serde_json::to_string(cursors).map_err(|e| NakadiError::Protocol {
            what: what.clone(),
            message: e.to_string(),
        })?;
        let builder = self
            .request(
                Method::GET,
                &format!("/event-types/{}/events", encode(event_type)),
            )?
            .header("X-Nakadi-Cursors", header)
            .query(&params.query());
        match self.send(&what, builder).await {
            Err(Refused {
                error:
                    NakadiError::Status {
                        status: 412,
                        detail,
                        ..
                    },
                ..
            }) => {
                let cursor = cursors.first();
                Err(NakadiError::CursorExpired {
                    event_type: event_type.to_string(),
                    partition: cursor.map(|c| c.partition.clone()).unwrap_or_default(),
                    offset: cursor.map(|c| c.offset.to_string()).unwrap_or_default(),
                    detail,
                }
                .into())
            }
            other => other,
        }
    }

    /// `POST /subscriptions`: finds the subscription with the same owning
    /// application, event types and consumer group, or creates it.
    pub async fn find_or_create_subscription(
        &self,
        wanted: &Subscription,
    ) -> Result<Subscription, NakadiError> {
        let what = format!(
            "subscription of {} for {}/{}",
            wanted.event_types.join(","),
            wanted.owning_application,
            wanted.consumer_group
        );
        let response = self
            .retrying(&what, Contact::First, || async {
                let builder = self
                    .request(Method::POST, "/subscriptions")?
                    .timeout(self.settings.request_timeout)
                    .json(wanted);
                self.send(&what, builder).await
            })
            .await?;
        let subscription: Subscription = parse_json(&what, response).await?;
        if subscription.id.is_none() {
            return Err(NakadiError::Protocol {
                what,
                message: "the subscription has no id".into(),
            });
        }
        Ok(subscription)
    }

    /// `GET /subscriptions/{id}/cursors`: what the subscription has committed.
    pub async fn subscription_cursors(
        &self,
        id: &str,
    ) -> Result<Vec<SubscriptionCursor>, NakadiError> {
        let items: Items<SubscriptionCursor> = self
            .get_json(
                &format!("cursors of subscription {id}"),
                &format!("/subscriptions/{}/cursors", encode(id)),
                Contact::Later,
            )
            .await?;
        Ok(items.items)
    }

    /// `GET /subscriptions/{id}/stats`.
    pub async fn subscription_stats(&self, id: &str) -> Result<Value, NakadiError> {
        self.get_json(
            &format!("stats of subscription {id}"),
            &format!("/subscriptions/{}/stats", encode(id)),
            Contact::Later,
        )
        .await
    }

    /// Opens a subscription stream; returns the response and its `X-Nakadi-StreamId`.
    pub async fn open_subscription(
        &self,
        id: &str,
        params: &StreamParams,
    ) -> Result<(Response, String), Refused> {
        let what = format!("stream of subscription {id}");
        let builder = self
            .request(
                Method::GET,
                &format!("/subscriptions/{}/events", encode(id)),
            )?
            .query(&params.query());
        let response = match self.send(&what, builder).await {
            Err(Refused {
                error:
                    NakadiError::Status {
                        status: 409,
                        detail,
                        ..
                    },
                retry_after,
            }) => {
                return Err(Refused {
                    error: NakadiError::NoFreeSlot { what, detail },
                    retry_after,
                });
            }
            other => other?,
        };
        let stream_id = response
            .headers()
            .get("X-Nakadi-StreamId")
            .and_then(|v| v.to_str().ok())
            .map(String::from)
            .ok_or_else(|| NakadiError::Protocol {
                what: what.clone(),
                message: "no X-Nakadi-StreamId header".into(),
            })?;
        Ok((response, stream_id))
    }

    /// `POST /subscriptions/{id}/cursors` with the stream's id.
    pub async fn commit(
        &self,
        id: &str,
        stream_id: &str,
        cursors: &[SubscriptionCursor],
    ) -> Result<CommitOutcome, NakadiError> {
        let what = format!("commit to subscription {id}");
        let body = serde_json::json!({ "items": cursors });
        let result = self
            .retrying(&what, Contact::Later, || async {
                let builder = self
                    .request(
                        Method::POST,
                        &format!("/subscriptions/{}/cursors", encode(id)),
                    )?
                    .timeout(self.settings.request_timeout)
                    .header("X-Nakadi-StreamId", stream_id)
                    .json(&body);
                self.send(&what, builder).await
            })
            .await;
        match result {
            Ok(response) if response.status() == StatusCode::NO_CONTENT => {
                Ok(CommitOutcome::Committed)
            }
            Ok(response) => {
                let items: Items<Value> = parse_json(&what, response).await?;
                let all_committed = items
                    .items
                    .iter()
                    .all(|i| i.get("result").and_then(Value::as_str) == Some("committed"));
                Ok(if all_committed {
                    CommitOutcome::Committed
                } else {
                    CommitOutcome::Outdated
                })
            }
            Err(NakadiError::Unprocessable { detail, .. }) => Ok(CommitOutcome::StreamGone(detail)),
            Err(e) => Err(e),
        }
    }
}

async fn parse_json<T: for<'de> Deserialize<'de>>(
    what: &str,
    response: Response,
) -> Result<T, NakadiError> {
    let bytes = response.bytes().await.map_err(|e| NakadiError::Transport {
        what: what.to_string(),
        message: describe_transport(&e),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| NakadiError::Protocol {
        what: what.to_string(),
        message: format!("not the JSON expected: {e}"),
    })
}

/// Turns a non-2xx answer into an error with Nakadi's own explanation.
async fn refusal(what: &str, response: Response) -> Refused {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.unwrap_or_default();
    let problem: Problem = serde_json::from_slice(&body).unwrap_or_default();
    let detail = problem.detail.or(problem.title).unwrap_or_else(|| {
        String::from_utf8_lossy(&body)
            .chars()
            .take(300)
            .collect::<String>()
    });
    let what = what.to_string();
    let error = match status {
        401 => NakadiError::Unauthorized { what, detail },
        403 => NakadiError::Forbidden { what, detail },
        404 => NakadiError::NotFound { what, detail },
        422 => NakadiError::Unprocessable { what, detail },
        _ => NakadiError::Status {
            what,
            status,
            detail,
        },
    };
    Refused { error, retry_after }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value: &HeaderValue = headers.get(reqwest::header::RETRY_AFTER)?;
    let seconds: f64 = value.to_str().ok()?.trim().parse().ok()?;
    (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// Nothing listens at the address (as opposed to a slow or lost connection).
fn is_connection_refused(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// reqwest's message, with the causes that say what happened.
pub fn describe_transport(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn flow_id() -> String {
    format!("materializer-{:016x}", rand::random::<u64>())
}
