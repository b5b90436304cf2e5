//! Byte scanning shared by the stream framer and the event decoder: both
//! spend most of their time stepping over the plain content of JSON strings.

/// Index of the first byte that ends a run of plain string content: a quote,
/// a backslash or a control character. Eight bytes at a time.
pub(crate) fn string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = bytes[i..].first_chunk::<8>() {
        let word = u64::from_le_bytes(*chunk);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A byte is flagged when it is zero after the xor, or below 0x20. Only
        // the lowest flag is exact, which is the one wanted.
        let hits = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let hits = hits & HIGHS;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|k| i + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_stop_finds_the_first_special_byte() {
        for (text, expected) in [
            ("", None),
            ("abc", None),
            ("abcdefghijk\"", Some(11)),
            ("abcdefgh\\ij\"", Some(8)),
            ("a\u{1}", Some(1)),
            ("héllo wörld \"", Some(14)),
            ("\"bcdefghi\"", Some(0)),
        ] {
            assert_eq!(string_stop(text.as_bytes()), expected, "{text:?}");
        }
    }
}
