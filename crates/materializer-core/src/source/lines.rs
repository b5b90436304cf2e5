//! Lines of an `application/x-json-stream` body. Chunks split lines anywhere;
//! a line that fits in one chunk is handed on as a slice of it, without a copy.
//! A line that spans chunks (a Nakadi batch of hundreds of events is many
//! chunks long) is gathered into a buffer sized after the line before it, so
//! that it is copied once instead of again at every growth of the buffer.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// What the next read gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its terminator.
    Complete(Bytes),
    /// The body ended cleanly.
    End,
    /// The body ended in the middle of a line (a cut connection).
    Truncated(Bytes),
}

pub struct LineReader<S> {
    body: S,
    /// Start of a line whose end has not arrived yet.
    partial: BytesMut,
    /// The rest of the current chunk.
    chunk: Bytes,
    /// The length of the last line gathered from several chunks.
    last_gathered: usize,
}

impl<S, E> LineReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    pub fn new(body: S) -> Self {
        LineReader {
            body,
            partial: BytesMut::new(),
            chunk: Bytes::new(),
            last_gathered: 0,
        }
    }

    pub async fn next_line(&mut self) -> Result<Line, E> {
        loop {
            if let Some(end) = memchr::memchr(b'\n', &self.chunk) {
                let head = self.chunk.split_to(end + 1);
                let line = if self.partial.is_empty() {
                    head.slice(..end)
                } else {
                    self.partial.extend_from_slice(&head[..end]);
                    self.last_gathered = self.partial.len();
                    self.partial.split().freeze()
                };
                let line = strip_cr(line);
                if line.is_empty() {
                    continue;
                }
                return Ok(Line::Complete(line));
            }
            if !self.chunk.is_empty() {
                if self.partial.is_empty() {
                    self.partial
                        .reserve(self.last_gathered.max(self.chunk.len()) + self.chunk.len());
                }
                self.partial.extend_from_slice(&self.chunk);
                self.chunk = Bytes::new();
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
                None => {
                    let rest = strip_cr(self.partial.split().freeze());
                    return Ok(if rest.iter().all(u8::is_ascii_whitespace) {
                        Line::End
                    } else {
                        Line::Truncated(rest)
                    });
                }
            }
        }
    }
}

fn strip_cr(line: Bytes) -> Bytes {
    if line.last() == Some(&b'\r') {
        line.slice(..line.len() - 1)
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(chunks: &[&str]) -> Vec<Line> {
        let items: Vec<Result<Bytes, ()>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c.as_bytes())))
            .collect();
        let mut reader = LineReader::new(futures::stream::iter(items));
        let mut out = Vec::new();
        loop {
            let line = reader.next_line().await.unwrap();
            let done = !matches!(line, Line::Complete(_));
            out.push(line);
            if done {
                return out;
            }
        }
    }

    fn complete(s: &str) -> Line {
        Line::Complete(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[tokio::test]
    async fn lines_split_across_chunks_are_joined() {
        assert_eq!(
            read_all(&["{\"a\":", "1}\n{\"b\"", ":2}\r\n\n{\"c\":3}\n"]).await,
            vec![
                complete("{\"a\":1}"),
                complete("{\"b\":2}"),
                complete("{\"c\":3}"),
                Line::End
            ]
        );
    }

    #[tokio::test]
    async fn a_body_ending_mid_line_is_truncated() {
        assert_eq!(
            read_all(&["{\"a\":1}\n{\"b\"", ":2"]).await,
            vec![
                complete("{\"a\":1}"),
                Line::Truncated(Bytes::from_static(b"{\"b\":2"))
            ]
        );
    }
}
