//! The admin side: the faults set through `/_admin/faults` and taken by the
//! handlers as they answer, and the events expired through `/_admin/expire`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Bus, lock, problem};
use crate::faults::{FaultPlan, Injected, Request, StreamFaults};

impl Bus {
    /// Drops the events of a partition before event number `before`.
    pub fn expire(&self, event_type: &str, partition: &str, before: u64) -> Result<(), String> {
        let log = self
            .event_type(event_type)
            .ok_or_else(|| format!("no event type {event_type}"))?;
        let index = log
            .index_of(partition)
            .ok_or_else(|| format!("no partition {partition}"))?;
        lock(&log.partitions[index]).expire_before(before);
        Ok(())
    }

    pub fn set_faults(&self, plan: FaultPlan) {
        lock(&self.faults).0 = plan;
    }

    pub fn injected(&self) -> Injected {
        lock(&self.faults).1.clone()
    }

    /// For each refused request so far, the time from its refusal to the
    /// next request of its kind (its retry).
    pub fn retry_waits(&self) -> Vec<Duration> {
        lock(&self.retry_waits).clone()
    }

    pub(super) fn refusal(&self, request: Request) -> Option<Response> {
        let mut refused = lock(&self.refused);
        if let Some((kind, at)) = *refused
            && kind == request
        {
            lock(&self.retry_waits).push(at.elapsed());
            *refused = None;
        }
        let mut guard = lock(&self.faults);
        let (plan, injected) = &mut *guard;
        let (status, retry_after) = plan.take_refusal(request, injected)?;
        *refused = Some((request, Instant::now()));
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = problem(status, "injected fault");
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        Some(response)
    }

    pub(super) fn stream_faults(&self) -> StreamFaults {
        lock(&self.faults).0.take_stream_faults()
    }

    /// The window (max_uncommitted_events) of a new subscription stream that
    /// asked for `asked`.
    pub(super) fn window(&self, asked: u64) -> u64 {
        let mut guard = lock(&self.faults);
        let (plan, injected) = &mut *guard;
        plan.take_window(asked, injected)
    }

    pub(super) fn count(&self, what: impl FnOnce(&mut Injected)) {
        what(&mut lock(&self.faults).1);
    }
}

pub(super) async fn get_faults(State(bus): State<Arc<Bus>>) -> Response {
    let guard = lock(&bus.faults);
    Json(json!({"pending": guard.0, "injected": guard.1})).into_response()
}

pub(super) async fn set_faults(
    State(bus): State<Arc<Bus>>,
    Json(plan): Json<FaultPlan>,
) -> Response {
    bus.set_faults(plan);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
pub(super) struct ExpireRequest {
    event_type: String,
    partition: String,
    /// Events before this offset are deleted.
    before_offset: String,
}

pub(super) async fn expire(
    State(bus): State<Arc<Bus>>,
    Json(request): Json<ExpireRequest>,
) -> Response {
    let before = match crate::log::number_of(&request.before_offset) {
        Ok(Some(n)) => n,
        Ok(None) => 0,
        Err(e) => return problem(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    match bus.expire(&request.event_type, &request.partition, before) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => problem(StatusCode::NOT_FOUND, e),
    }
}
