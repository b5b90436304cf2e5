//! A position in one event's bytes and the JSON grammar read from there,
//! as strictly as serde_json reads it: whitespace, literals, numbers,
//! strings with their escapes, and any value skipped with its syntax
//! checked. Apart from the columns, which only say what they expect next.

use super::{GiveUp, MAX_DEPTH, Step};
use crate::source::scan::string_stop;

/// A position in one event's bytes.
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over the items of an array or object whose opening bracket is
    /// behind the cursor, through its `close`, separated by commas: `item`
    /// reads the `k`-th one, the cursor on its first byte.
    #[inline]
    pub(super) fn items(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self, usize) -> Step,
    ) -> Step {
        self.ws();
        if self.peek()? == close {
            self.pos += 1;
            return Ok(());
        }
        let mut k = 0;
        loop {
            self.ws();
            item(self, k)?;
            self.ws();
            match self.next()? {
                b',' => k += 1,
                b if b == close => return Ok(()),
                _ => return Err(GiveUp),
            }
        }
    }

    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.buf.get(self.pos) {
            self.pos += 1;
        }
    }

    pub(super) fn peek(&self) -> Step<u8> {
        self.buf.get(self.pos).copied().ok_or(GiveUp)
    }

    fn next(&mut self) -> Step<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    pub(super) fn eat(&mut self, wanted: u8) -> Step {
        if self.peek()? == wanted {
            self.pos += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    pub(super) fn literal(&mut self, word: &[u8]) -> Step {
        if self.buf[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// A number in JSON's grammar; returns its text and whether it is an
    /// integer (no fraction, no exponent).
    pub(super) fn number(&mut self) -> Step<(&'a [u8], bool)> {
        let start = self.pos;
        if self.peek()? == b'-' {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return Err(GiveUp),
        }
        let mut integer = true;
        if self.buf.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            integer = false;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.buf.get(self.pos) {
            self.pos += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.buf.get(self.pos) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        Ok((&self.buf[start..self.pos], integer))
    }

    fn digits(&mut self) {
        while self.buf.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Step {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            Err(GiveUp)
        } else {
            Ok(())
        }
    }

    /// An object key without escapes; a key with escapes goes to arrow-json.
    pub(super) fn plain_key(&mut self) -> Step<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.pos;
        let stop = start + string_stop(&self.buf[start..]).ok_or(GiveUp)?;
        if self.buf[stop] != b'"' {
            return Err(GiveUp);
        }
        self.pos = stop + 1;
        Ok(&self.buf[start..stop])
    }

    /// Appends the decoded text of the string at the cursor to `out`.
    pub(super) fn string_into(&mut self, out: &mut Vec<u8>) -> Step {
        self.eat(b'"')?;
        loop {
            let start = self.pos;
            let stop = start + string_stop(&self.buf[start..]).ok_or(GiveUp)?;
            out.extend_from_slice(&self.buf[start..stop]);
            self.pos = stop + 1;
            match self.buf[stop] {
                b'"' => return Ok(()),
                b'\\' => self.escape(Some(out))?,
                _ => return Err(GiveUp), // a raw control character
            }
        }
    }

    fn skip_string(&mut self) -> Step {
        self.eat(b'"')?;
        loop {
            let stop = self.pos + string_stop(&self.buf[self.pos..]).ok_or(GiveUp)?;
            self.pos = stop + 1;
            match self.buf[stop] {
                b'"' => return Ok(()),
                b'\\' => self.escape(None)?,
                _ => return Err(GiveUp),
            }
        }
    }

    /// The escape after a backslash; decoded into `out` when given.
    fn escape(&mut self, out: Option<&mut Vec<u8>>) -> Step {
        let byte = match self.next()? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let c = self.unicode_escape()?;
                if let Some(out) = out {
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
                return Ok(());
            }
            _ => return Err(GiveUp),
        };
        if let Some(out) = out {
            out.push(byte);
        }
        Ok(())
    }

    /// `XXXX` after `\u`, with the low half of a surrogate pair if one follows.
    fn unicode_escape(&mut self) -> Step<char> {
        let high = self.hex4()?;
        let code = match high {
            0xD800..=0xDBFF => {
                self.literal(b"\\u")?;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(GiveUp);
                }
                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(GiveUp),
            other => other,
        };
        char::from_u32(code).ok_or(GiveUp)
    }

    fn hex4(&mut self) -> Step<u32> {
        let digits = self.buf.get(self.pos..self.pos + 4).ok_or(GiveUp)?;
        let mut value = 0;
        for &d in digits {
            value = value * 16 + char::from(d).to_digit(16).ok_or(GiveUp)?;
        }
        self.pos += 4;
        Ok(value)
    }

    /// Skips any JSON value, checking its syntax.
    pub(super) fn skip_value(&mut self, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => {
                self.pos += 1;
                self.items(b'}', |c, _| {
                    c.skip_string()?;
                    c.ws();
                    c.eat(b':')?;
                    c.ws();
                    c.skip_value(depth + 1)
                })
            }
            b'[' => {
                self.pos += 1;
                self.items(b']', |c, _| c.skip_value(depth + 1))
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(|_| ()),
        }
    }
}
