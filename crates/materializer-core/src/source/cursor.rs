//! Nakadi cursors and offsets.
//!
//! Offsets are opaque strings to clients. Nakadi serves them as
//! `001-<timeline>-<kafka offset>` (e.g. `001-0001-000000000000000123`), older
//! installations as plain numbers, and accepts `BEGIN` (any case) for "before the
//! oldest event". Two offsets of one partition compare as Nakadi's own clients
//! compare them: `BEGIN` first, then shorter before longer, then byte order.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An offset inside one Nakadi partition (exclusive when used as a start cursor).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Offset(String);

impl Offset {
    pub fn new(value: impl Into<String>) -> Self {
        Offset(value.into())
    }

    /// The position before the oldest available event of a partition.
    pub fn begin() -> Self {
        Offset("BEGIN".to_string())
    }

    pub fn is_begin(&self) -> bool {
        self.0.eq_ignore_ascii_case("BEGIN")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The numeric part of the offset and the prefix it is written after.
    /// `001-0001-000000000000000123` -> (`001-0001-`, 123); `123` -> (``, 123).
    fn split_numeric(&self) -> Option<(&str, &str)> {
        if self.is_begin() {
            return None;
        }
        let digits_start = self.0.rfind('-').map(|i| i + 1).unwrap_or(0);
        let (prefix, digits) = self.0.split_at(digits_start);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((prefix, digits))
    }

    /// The offset `n` events before this one in the same timeline
    /// (events of a partition have consecutive offsets).
    pub fn minus(&self, n: u64) -> Option<Offset> {
        let mut lowered = String::new();
        OffsetSteps::of(self)?
            .write_minus(n, &mut lowered)
            .then_some(Offset(lowered))
    }

    /// The offset `n` events after this one in the same timeline.
    pub fn plus(&self, n: u64) -> Option<Offset> {
        let steps = OffsetSteps::of(self)?;
        let mut raised = String::new();
        steps.write(steps.value.checked_add(n)?, &mut raised);
        Some(Offset(raised))
    }

    /// Number of events after `self` up to and including `later`, when both
    /// sit in the same timeline.
    pub fn distance_to(&self, later: &Offset) -> Option<u64> {
        let (p1, d1) = self.split_numeric()?;
        let (p2, d2) = later.split_numeric()?;
        if p1 != p2 {
            return None;
        }
        let a: u64 = d1.parse().ok()?;
        let b: u64 = d2.parse().ok()?;
        b.checked_sub(a)
    }

    /// Number of events after the cursor `self` up to and including `end`,
    /// when both sit in the same timeline; `BEGIN` is the cursor before
    /// offset 0.
    pub fn events_until(&self, end: &Offset) -> Option<u64> {
        if !self.is_begin() {
            return self.distance_to(end);
        }
        let (_, digits) = end.split_numeric()?;
        digits.parse::<u64>().ok()?.checked_add(1)
    }

    /// Nakadi's order of offsets within one partition.
    pub fn nakadi_cmp(&self, other: &Offset) -> Ordering {
        match (self.is_begin(), other.is_begin()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => self
                .0
                .len()
                .cmp(&other.0.len())
                .then_with(|| self.0.cmp(&other.0)),
        }
    }

    pub fn is_after(&self, other: &Offset) -> bool {
        self.nakadi_cmp(other) == Ordering::Greater
    }
}

/// A numeric offset taken apart once, to write the offsets before it without
/// parsing it again (a batch's events count down from its cursor).
#[derive(Clone, Debug)]
pub struct OffsetSteps {
    prefix: String,
    value: u64,
    /// Digits to pad to: those of the offset when it has a prefix (Nakadi's
    /// fixed-width offsets), none for a plain number.
    width: usize,
}

impl OffsetSteps {
    /// `None` for `BEGIN` and offsets that do not end in a number.
    pub fn of(offset: &Offset) -> Option<OffsetSteps> {
        let (prefix, digits) = offset.split_numeric()?;
        Some(OffsetSteps {
            prefix: prefix.to_string(),
            value: digits.parse().ok()?,
            width: if prefix.is_empty() { 0 } else { digits.len() },
        })
    }

    /// Appends the offset `n` events before this one to `out`; `false` (and
    /// nothing appended) when there is none.
    pub fn write_minus(&self, n: u64, out: &mut String) -> bool {
        let Some(lowered) = self.value.checked_sub(n) else {
            return false;
        };
        self.write(lowered, out);
        true
    }

    /// Appends the offset numbered `value` in this offset's timeline.
    fn write(&self, value: u64, out: &mut String) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value);
        out.push_str(&self.prefix);
        out.extend(std::iter::repeat_n(
            '0',
            self.width.saturating_sub(digits.len()),
        ));
        out.push_str(digits);
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position in one partition, as Nakadi writes it in stream batches and in
/// the `X-Nakadi-Cursors` header.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub partition: String,
    pub offset: Offset,
}

/// Orders partition names as people expect: numerically when both are numbers.
pub fn partition_cmp(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_is_before_everything_in_any_case() {
        let begin = Offset::new("begin");
        assert!(begin.is_begin());
        assert_eq!(begin.nakadi_cmp(&Offset::new("0")), Ordering::Less);
        assert_eq!(
            Offset::new("001-0001-000000000000000000").nakadi_cmp(&Offset::begin()),
            Ordering::Greater
        );
    }

    #[test]
    fn offsets_compare_by_length_then_bytes() {
        assert!(Offset::new("10").is_after(&Offset::new("9")));
        assert!(
            Offset::new("001-0002-000000000000000001")
                .is_after(&Offset::new("001-0001-000000000000000999"))
        );
        assert_eq!(
            Offset::new("001-0001-000000000000000123")
                .nakadi_cmp(&Offset::new("001-0001-000000000000000123")),
            Ordering::Equal
        );
    }

    #[test]
    fn arithmetic_keeps_the_format() {
        let o = Offset::new("001-0001-000000000000000123");
        assert_eq!(o.minus(3).unwrap().as_str(), "001-0001-000000000000000120");
        assert_eq!(o.plus(1).unwrap().as_str(), "001-0001-000000000000000124");
        assert_eq!(Offset::new("42").minus(2).unwrap().as_str(), "40");
        assert_eq!(Offset::new("7-99").plus(1).unwrap().as_str(), "7-100");
        assert_eq!(
            Offset::new("001-0001-000000000000000100").distance_to(&o),
            Some(23)
        );
        assert_eq!(
            Offset::new("001-0002-000000000000000100").distance_to(&o),
            None
        );
        assert_eq!(Offset::begin().minus(1), None);
        assert_eq!(Offset::new("3").minus(4), None);
    }

    #[test]
    fn events_until_counts_from_the_cursor_or_from_offset_zero() {
        let end = Offset::new("001-0001-000000000000000009");
        assert_eq!(
            Offset::new("001-0001-000000000000000004").events_until(&end),
            Some(5)
        );
        assert_eq!(Offset::begin().events_until(&end), Some(10));
        assert_eq!(Offset::begin().events_until(&Offset::new("opaque")), None);
    }

    #[test]
    fn partitions_sort_numerically() {
        let mut ps = vec!["10", "2", "1", "0"];
        ps.sort_by(|a, b| partition_cmp(a, b));
        assert_eq!(ps, vec!["0", "1", "2", "10"]);
    }
}
