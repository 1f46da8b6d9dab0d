//! HTTP/1 request framing, watched on the wire.
//!
//! hyper reads a request that has both `Content-Length` and `Transfer-Encoding` the way
//! RFC 9112 says (the chunked encoding wins, the length is dropped, the connection closes
//! after the response) but does not tell the service. Such a request has no honest use:
//! it is how requests are smuggled past proxies that frame it the other way. weir refuses
//! it. This watcher sees the bytes hyper reads, follows the framing of each request on
//! the connection, and notes which one had both headers; the pipeline asks before
//! serving each request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The request's transfer codings when they are anything but plain `chunked` (such as
/// `gzip, chunked`): weir forwards bodies re-framed and would drop the other codings, so
/// such requests are refused (501, as Envoy does).
pub fn unsupported_transfer_coding(headers: &http::HeaderMap) -> Option<String> {
    let values: Vec<&[u8]> = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .map(http::HeaderValue::as_bytes)
        .collect();
    if values.is_empty() {
        return None;
    }
    let joined = String::from_utf8_lossy(&values.join(&b","[..])).into_owned();
    let mut codings = joined.split(',').map(str::trim).filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (Some(only), None) if only.eq_ignore_ascii_case("chunked") => None,
        _ => Some(joined),
    }
}

/// Longest request head or chunk line followed; beyond it hyper refuses the request
/// anyway, and the watcher stops.
const MAX_LINE_BYTES: usize = 128 * 1024;

/// What the watcher found on one connection, shared with the requests served on it.
#[derive(Debug, Default)]
pub struct ConnectionFraming {
    /// 1-based number of the request that had conflicting framing; 0 for none.
    conflicting: AtomicU64,
    /// Requests the service has asked about.
    asked: AtomicU64,
}

impl ConnectionFraming {
    /// Asks for the next request served on the connection (call exactly once per
    /// request, in order): whether it had both `Content-Length` and `Transfer-Encoding`.
    pub fn next_request_conflicts(&self) -> bool {
        let number = self.asked.fetch_add(1, Ordering::Relaxed) + 1;
        self.conflicting.load(Ordering::Relaxed) == number
    }
}

enum State {
    /// Reading a request head (bytes so far).
    Head,
    /// Skipping a body of known length.
    Fixed(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data.
    ChunkData(u64),
    /// Skipping the CRLF after chunk data.
    ChunkEnd(u8),
    /// Reading trailers up to the empty line.
    Trailers,
    /// Not HTTP/1 framing any more (HTTP/2, an upgrade, CONNECT, or a request hyper
    /// refuses anyway).
    Off,
}

/// Follows request framing through the bytes of a connection.
struct Scanner {
    state: State,
    line: Vec<u8>,
    requests: u64,
    found: Arc<ConnectionFraming>,
}

impl Scanner {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Fixed(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkData(left) => {
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.state = State::ChunkEnd(2);
                    }
                }
                State::ChunkEnd(left) => {
                    let take = usize::from(*left).min(bytes.len());
                    *left -= take as u8;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.state = State::ChunkSize;
                    }
                }
                State::Head | State::ChunkSize | State::Trailers => {
                    let terminator: &[u8] = if matches!(self.state, State::ChunkSize) {
                        b"\r\n"
                    } else {
                        b"\r\n\r\n"
                    };
                    // Usually a whole head arrives in one read: look at it where it is.
                    if self.line.is_empty()
                        && let Some(end) = self.line_end(bytes, 0, terminator)
                    {
                        let (line, rest) = bytes.split_at(end);
                        self.finish_line(line);
                        bytes = rest;
                        continue;
                    }
                    let Some(used) = self.take_until(bytes, terminator) else {
                        return;
                    };
                    bytes = &bytes[used..];
                    let line = std::mem::take(&mut self.line);
                    self.finish_line(&line);
                    self.line = line;
                    self.line.clear();
                }
            }
        }
    }

    /// Where the line starting at `bytes[0]` ends (just after `terminator`), if it does
    /// within `bytes`; the search starts at `from`.
    fn line_end(&self, bytes: &[u8], from: usize, terminator: &[u8]) -> Option<usize> {
        if matches!(self.state, State::Trailers) && bytes.starts_with(b"\r\n") {
            // No trailers: the empty line ends the message at once.
            return Some(2);
        }
        memchr::memmem::find(&bytes[from..], terminator).map(|at| from + at + terminator.len())
    }

    /// Appends to `line` up to and including `terminator`; returns how many bytes were
    /// used, or `None` when all were taken without reaching it.
    fn take_until(&mut self, bytes: &[u8], terminator: &[u8]) -> Option<usize> {
        let old = self.line.len();
        let start = old.saturating_sub(terminator.len() - 1);
        self.line.extend_from_slice(bytes);
        let end = self.line_end(&self.line, start, terminator);
        match end {
            Some(end) => {
                self.line.truncate(end);
                Some(end - old)
            }
            None => {
                if self.line.len() > MAX_LINE_BYTES {
                    self.state = State::Off;
                }
                None
            }
        }
    }

    fn finish_line(&mut self, line: &[u8]) {
        self.state = match self.state {
            State::Head => self.head(line),
            State::ChunkSize => {
                let size = line
                    .split(|b| *b == b';' || *b == b'\r')
                    .next()
                    .unwrap_or_default();
                match std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                {
                    Some(0) => State::Trailers,
                    Some(size) => State::ChunkData(size),
                    None => State::Off,
                }
            }
            _ => State::Head,
        };
    }

    fn head(&mut self, head: &[u8]) -> State {
        // Empty lines before a request line are allowed and skipped.
        let start = head
            .iter()
            .position(|b| *b != b'\r' && *b != b'\n')
            .unwrap_or(head.len());
        let head = &head[start..];
        if head.is_empty() {
            return State::Head;
        }
        if head.starts_with(b"PRI * HTTP/2.0") {
            return State::Off;
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
            return State::Off;
        }
        self.requests += 1;
        let headers: &[httparse::Header<'_>] = request.headers;
        let named = |name: &'static str| {
            headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
        };
        let length = named("content-length").next();
        let encoding = named("transfer-encoding").next_back();
        if length.is_some() && encoding.is_some() {
            self.found
                .conflicting
                .store(self.requests, Ordering::Relaxed);
            return State::Off;
        }
        if request.method == Some("CONNECT") || named("upgrade").next().is_some() {
            return State::Off;
        }
        if let Some(encoding) = encoding {
            let chunked = encoding
                .value
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return if chunked {
                State::ChunkSize
            } else {
                State::Off
            };
        }
        match length.map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        }) {
            None | Some(Some(0)) => State::Head,
            Some(Some(length)) => State::Fixed(length),
            Some(None) => State::Off,
        }
    }
}

/// A connection whose inbound bytes are watched for request framing.
pub struct FramingWatch<IO> {
    inner: IO,
    scanner: Scanner,
}

impl<IO> FramingWatch<IO> {
    /// Watches `inner`; what is found is shared through the returned handle.
    pub fn new(inner: IO) -> (Self, Arc<ConnectionFraming>) {
        let found = Arc::new(ConnectionFraming::default());
        let scanner = Scanner {
            state: State::Head,
            line: Vec::new(),
            requests: 0,
            found: found.clone(),
        };
        (Self { inner, scanner }, found)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingWatch<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if result.is_ready() {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.scanner.feed(new);
            }
        }
        result
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FramingWatch<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_chunked_is_a_supported_transfer_coding() {
        let codings = |values: &[&str]| {
            let mut headers = http::HeaderMap::new();
            for v in values {
                headers.append(http::header::TRANSFER_ENCODING, v.parse().unwrap());
            }
            unsupported_transfer_coding(&headers)
        };
        assert_eq!(codings(&[]), None);
        assert_eq!(codings(&["chunked"]), None);
        assert_eq!(codings(&[" Chunked "]), None);
        assert_eq!(
            codings(&["gzip, chunked"]).as_deref(),
            Some("gzip, chunked")
        );
        assert_eq!(
            codings(&["gzip", "chunked"]).as_deref(),
            Some("gzip,chunked")
        );
        assert!(codings(&["chunked, chunked"]).is_some());
    }

    /// Feeds `bytes` in pieces of `step` and returns the verdict for each request.
    fn verdicts(bytes: &[u8], step: usize, requests: usize) -> Vec<bool> {
        let found = Arc::new(ConnectionFraming::default());
        let mut scanner = Scanner {
            state: State::Head,
            line: Vec::new(),
            requests: 0,
            found: found.clone(),
        };
        for piece in bytes.chunks(step) {
            scanner.feed(piece);
        }
        (0..requests)
            .map(|_| found.next_request_conflicts())
            .collect()
    }

    const PIPELINE: &[u8] = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
POST /e HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n\
\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n\
POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-trailer: y\r\n\r\n\
POST /d HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn the_conflicting_request_is_found_behind_honest_ones() {
        for step in [1, 2, 3, 7, 64, PIPELINE.len()] {
            assert_eq!(
                verdicts(PIPELINE, step, 5),
                [false, false, false, false, true],
                "read in pieces of {step}"
            );
        }
    }

    #[test]
    fn honest_connections_have_no_verdict() {
        let honest =
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\nPOST / HTTP/1.1\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(verdicts(honest, 5, 2), [false, false]);
    }

    #[test]
    fn http2_and_upgrades_are_left_alone() {
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(verdicts(h2, 4, 1), [false]);
        let upgrade = b"GET / HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\ncontent-length: 1\r\ntransfer-encoding: x\r\n\r\n";
        assert_eq!(
            verdicts(upgrade, 3, 2),
            [false, false],
            "bytes after an upgrade are not HTTP"
        );
    }
}
