//! Faults the server injects on request, to prove clients survive them.
//!
//! A plan is set with `POST /_admin/faults` and consumed by the next requests;
//! `GET /_admin/faults` shows what is left and what was injected.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Refuse the next `times` stream or partition requests with `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub status: u16,
    pub times: u32,
    /// Seconds for `Retry-After`.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Only requests of this kind are refused (and counted); the others pass.
    #[serde(default)]
    pub only: Option<Request>,
}

/// The kinds of request a refusal may be kept for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    /// `GET /event-types/{name}/partitions`.
    Partitions,
    /// `GET /event-types/{name}/events`.
    Events,
    /// `GET /subscriptions/{id}/events`.
    SubscriptionEvents,
}

/// Do something to the next `streams` stream connections after `after` batches.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Countdown {
    pub after: u32,
    pub streams: u32,
}

/// For the next `streams` stream connections, for `seconds` from their start.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub seconds: f64,
    pub streams: u32,
}

/// For the next `streams` subscription streams, a window of `events`
/// uncommitted events, whatever `max_uncommitted_events` they ask for.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    pub events: u64,
    pub streams: u32,
}

/// Faults still to inject.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultPlan {
    /// Answer requests with an error status (429, 500, 503, ...).
    pub refuse: Option<Refusal>,
    /// Close the connection abruptly after some batches.
    pub drop_after_batches: Option<Countdown>,
    /// Send half of a batch line, then close the connection.
    pub cut_line_after_batches: Option<Countdown>,
    /// Send only keep-alives for a while, although events are there.
    pub keepalive_only: Option<Window>,
    /// Send nothing at all for a while (a hanging server).
    pub silence: Option<Window>,
    /// Pause subscription streams at fewer uncommitted events than they ask for.
    pub max_uncommitted: Option<Cap>,
}

/// Faults one stream connection carries.
#[derive(Clone, Debug, Default)]
pub struct StreamFaults {
    pub drop_after: Option<u32>,
    pub cut_after: Option<u32>,
    pub keepalive_only: Option<Duration>,
    pub silence: Option<Duration>,
}

/// How many faults of each kind were injected.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Injected {
    pub refused: u64,
    pub dropped: u64,
    pub cut: u64,
    pub keepalive_only: u64,
    pub silent: u64,
    pub capped: u64,
}

impl FaultPlan {
    /// The refusal for the next request, of kind `request`, if any is left.
    pub fn take_refusal(
        &mut self,
        request: Request,
        injected: &mut Injected,
    ) -> Option<(u16, Option<u64>)> {
        let refusal = self.refuse.as_mut()?;
        if refusal.only.is_some_and(|only| only != request) {
            return None;
        }
        if refusal.times == 0 {
            self.refuse = None;
            return None;
        }
        refusal.times -= 1;
        injected.refused += 1;
        let answer = (refusal.status, refusal.retry_after);
        if refusal.times == 0 {
            self.refuse = None;
        }
        Some(answer)
    }

    /// The window of the next subscription stream: `asked`, or less when a
    /// cap is left.
    pub fn take_window(&mut self, asked: u64, injected: &mut Injected) -> u64 {
        let Some(cap) = self.max_uncommitted.as_mut() else {
            return asked;
        };
        if cap.streams == 0 {
            self.max_uncommitted = None;
            return asked;
        }
        cap.streams -= 1;
        let events = cap.events;
        if cap.streams == 0 {
            self.max_uncommitted = None;
        }
        injected.capped += 1;
        asked.min(events.max(1))
    }

    /// The faults of the next stream connection.
    pub fn take_stream_faults(&mut self) -> StreamFaults {
        fn countdown(slot: &mut Option<Countdown>) -> Option<u32> {
            let c = slot.as_mut()?;
            if c.streams == 0 {
                *slot = None;
                return None;
            }
            c.streams -= 1;
            let after = c.after;
            if c.streams == 0 {
                *slot = None;
            }
            Some(after)
        }
        fn window(slot: &mut Option<Window>) -> Option<Duration> {
            let w = slot.as_mut()?;
            if w.streams == 0 {
                *slot = None;
                return None;
            }
            w.streams -= 1;
            let d = Duration::from_secs_f64(w.seconds.max(0.0));
            if w.streams == 0 {
                *slot = None;
            }
            Some(d)
        }
        StreamFaults {
            drop_after: countdown(&mut self.drop_after_batches),
            cut_after: countdown(&mut self.cut_line_after_batches),
            keepalive_only: window(&mut self.keepalive_only),
            silence: window(&mut self.silence),
        }
    }
}
