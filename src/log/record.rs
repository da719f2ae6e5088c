//! Records inside a v2 batch: zig-zag varints and the record layout, read from a [`Source`] that is either the
//! batch bytes themselves (uncompressed, zero-copy) or a bounded decompression stream.
//!
//! Record: length varint, attributes i8, timestamp delta varlong, offset delta varint, key length varint + key,
//! value length varint + value, header count varint, then per header key length varint + key and value length
//! varint + value. Every length is checked against the bytes left in the record before anything is read, so a
//! lying length fails with `CorruptMessage` instead of allocating.

use std::io::{BufRead, Read};

use bytes::Bytes;

use super::LogError;

/// The smallest possible record: length (1 byte) and a body of six one-byte fields.
pub(crate) const MIN_RECORD_BYTES: usize = 7;
/// The smallest record body (what the length varint counts).
const MIN_RECORD_BODY_BYTES: i64 = 6;

fn corrupt(msg: impl Into<String>) -> LogError {
    LogError::CorruptMessage(msg.into())
}

/// A forward-only byte source the record parser reads from.
pub(crate) trait Source {
    fn byte(&mut self) -> Result<u8, LogError>;
    fn skip(&mut self, n: usize) -> Result<(), LogError>;
    /// Reads `n` bytes into a new buffer (only used when decoding records, never when validating).
    fn take(&mut self, n: usize) -> Result<Bytes, LogError>;
    /// Bytes consumed so far.
    fn consumed(&self) -> u64;
    fn at_end(&mut self) -> Result<bool, LogError>;
}

pub(crate) struct SliceSource<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> SliceSource<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        SliceSource { buf, pos: 0 }
    }
}

fn truncated() -> LogError {
    corrupt("record data ends inside a record")
}

impl Source for SliceSource<'_> {
    #[inline]
    fn byte(&mut self) -> Result<u8, LogError> {
        let b = *self.buf.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }
    #[inline]
    fn skip(&mut self, n: usize) -> Result<(), LogError> {
        if n > self.buf.len() - self.pos {
            return Err(truncated());
        }
        self.pos += n;
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<Bytes, LogError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(truncated)?;
        let out = Bytes::copy_from_slice(&self.buf[self.pos..end]);
        self.pos = end;
        Ok(out)
    }
    #[inline]
    fn consumed(&self) -> u64 {
        self.pos as u64
    }
    fn at_end(&mut self) -> Result<bool, LogError> {
        Ok(self.pos == self.buf.len())
    }
}

/// Records read from a decompressor (already wrapped in a size limit) through a fixed-size buffer.
pub(crate) struct StreamSource<R: BufRead> {
    inner: R,
    consumed: u64,
}

impl<R: BufRead> StreamSource<R> {
    pub(crate) fn new(inner: R) -> Self {
        StreamSource { inner, consumed: 0 }
    }
}

fn stream_error(e: std::io::Error) -> LogError {
    corrupt(format!("decompressing records failed: {e}"))
}

impl<R: BufRead> Source for StreamSource<R> {
    #[inline]
    fn byte(&mut self) -> Result<u8, LogError> {
        let buf = self.inner.fill_buf().map_err(stream_error)?;
        let b = *buf.first().ok_or_else(truncated)?;
        self.inner.consume(1);
        self.consumed += 1;
        Ok(b)
    }
    fn skip(&mut self, mut n: usize) -> Result<(), LogError> {
        while n > 0 {
            let buf = self.inner.fill_buf().map_err(stream_error)?;
            if buf.is_empty() {
                return Err(truncated());
            }
            let k = buf.len().min(n);
            self.inner.consume(k);
            self.consumed += k as u64;
            n -= k;
        }
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<Bytes, LogError> {
        // Grows with the data actually present: a lying length cannot reserve memory up front.
        let mut out = Vec::new();
        (&mut self.inner).take(n as u64).read_to_end(&mut out).map_err(stream_error)?;
        if out.len() != n {
            return Err(truncated());
        }
        self.consumed += n as u64;
        Ok(Bytes::from(out))
    }
    fn consumed(&self) -> u64 {
        self.consumed
    }
    fn at_end(&mut self) -> Result<bool, LogError> {
        Ok(self.inner.fill_buf().map_err(stream_error)?.is_empty())
    }
}

#[inline]
pub(crate) fn read_varint<S: Source>(src: &mut S) -> Result<i32, LogError> {
    let mut raw: u32 = 0;
    for i in 0..5 {
        let b = src.byte()?;
        raw |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    Err(corrupt("varint longer than 5 bytes"))
}

#[inline]
pub(crate) fn read_varlong<S: Source>(src: &mut S) -> Result<i64, LogError> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let b = src.byte()?;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(corrupt("varlong longer than 10 bytes"))
}

pub(crate) fn write_varint(out: &mut Vec<u8>, v: i32) {
    write_varlong(out, i64::from(v));
}

pub(crate) fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

pub(crate) fn varint_len(v: i64) -> usize {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while raw >= 0x80 {
        raw >>= 7;
        n += 1;
    }
    n
}

/// What the validator needs to know about one record; the data itself is skipped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordMeta {
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    /// -1 for a null key.
    pub key_len: i32,
}

/// Key, value and headers, filled only when decoding.
#[derive(Default)]
pub(crate) struct RecordData {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Reads a length-prefixed field (-1 = null when `nullable`) bounded by `end`, skipping or capturing it.
fn field<S: Source>(
    src: &mut S,
    end: u64,
    nullable: bool,
    what: &str,
    capture: bool,
) -> Result<(i32, Option<Bytes>), LogError> {
    let len = read_varint(src)?;
    let left = end.checked_sub(src.consumed()).ok_or_else(|| corrupt(format!("record overruns its length at {what}")))?;
    if len < 0 {
        if len == -1 && nullable {
            return Ok((-1, None));
        }
        return Err(corrupt(format!("invalid {what} length {len}")));
    }
    if len as u64 > left {
        return Err(corrupt(format!("{what} length {len} exceeds the {left} bytes left in the record")));
    }
    if capture {
        Ok((len, Some(src.take(len as usize)?)))
    } else {
        src.skip(len as usize)?;
        Ok((len, None))
    }
}

/// Parses record number `index` of its batch; with `data` the key, value and headers are copied out.
#[inline]
pub(crate) fn parse_record<S: Source>(src: &mut S, index: i32, data: Option<&mut RecordData>) -> Result<RecordMeta, LogError> {
    let len = i64::from(read_varint(src)?);
    if len < MIN_RECORD_BODY_BYTES {
        return Err(corrupt(format!("record {index} has invalid length {len}")));
    }
    let start = src.consumed();
    let end = start + len as u64;
    let _attributes = src.byte()?;
    let timestamp_delta = read_varlong(src)?;
    let offset_delta = read_varint(src)?;
    // Deltas grow by at least one per record; compaction leaves gaps, so only Produce validation (`batch::walk`)
    // insists on exactly `index`.
    if offset_delta < index {
        return Err(corrupt(format!("record {index} has offset delta {offset_delta}")));
    }
    let capture = data.is_some();
    let (key_len, key) = field(src, end, true, "key", capture)?;
    let (_, value) = field(src, end, true, "value", capture)?;
    let header_count = read_varint(src)?;
    let left = end.checked_sub(src.consumed()).ok_or_else(|| corrupt(format!("record {index} overruns its length")))?;
    // Each header takes at least two bytes (two length varints).
    if header_count < 0 || header_count as u64 > left / 2 {
        return Err(corrupt(format!("record {index} has invalid header count {header_count}")));
    }
    let mut headers = Vec::new();
    for _ in 0..header_count {
        let (_, hkey) = field(src, end, false, "header key", capture)?;
        let (_, hvalue) = field(src, end, true, "header value", capture)?;
        if capture {
            headers.push((hkey.unwrap_or_default(), hvalue));
        }
    }
    if src.consumed() != end {
        return Err(corrupt(format!(
            "record {index} declares {len} bytes but its fields take {}",
            src.consumed().saturating_sub(start)
        )));
    }
    if let Some(d) = data {
        d.key = key;
        d.value = value;
        d.headers = headers;
    }
    Ok(RecordMeta { timestamp_delta, offset_delta, key_len })
}

/// Encodes one record (used by the batch builder).
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&[u8], Option<&[u8]>)],
) {
    let opt_len = |b: Option<&[u8]>| b.map_or(-1i64, |b| b.len() as i64);
    let mut body = 1 + varint_len(timestamp_delta) + varint_len(i64::from(offset_delta));
    for part in [key, value] {
        body += varint_len(opt_len(part)) + part.map_or(0, |b| b.len());
    }
    body += varint_len(headers.len() as i64);
    for (k, v) in headers {
        body += varint_len(k.len() as i64) + k.len() + varint_len(opt_len(*v)) + v.map_or(0, |b| b.len());
    }
    write_varlong(out, body as i64);
    out.push(0);
    write_varlong(out, timestamp_delta);
    write_varint(out, offset_delta);
    for part in [key, value] {
        write_varlong(out, opt_len(part));
        out.extend_from_slice(part.unwrap_or_default());
    }
    write_varlong(out, headers.len() as i64);
    for (k, v) in headers {
        write_varlong(out, k.len() as i64);
        out.extend_from_slice(k);
        write_varlong(out, opt_len(*v));
        out.extend_from_slice(v.unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i32::MAX as i64, i32::MIN as i64] {
            let mut out = Vec::new();
            write_varint(&mut out, v as i32);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(read_varint(&mut SliceSource::new(&out)).unwrap() as i64, v);
        }
        for v in [0i64, i64::MAX, i64::MIN, 1 << 40, -(1 << 40)] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(read_varlong(&mut SliceSource::new(&out)).unwrap(), v);
        }
        assert!(read_varint(&mut SliceSource::new(&[0xff; 6])).is_err());
        assert!(read_varlong(&mut SliceSource::new(&[0xff; 11])).is_err());
        assert!(read_varint(&mut SliceSource::new(&[0x80])).is_err());
    }

    #[test]
    fn record_round_trip_and_lying_lengths() {
        let mut out = Vec::new();
        encode_record(&mut out, 0, 5, Some(b"k"), Some(b"value"), &[(b"h", None), (b"h2", Some(b"x"))]);
        let mut data = RecordData::default();
        let meta = parse_record(&mut SliceSource::new(&out), 0, Some(&mut data)).unwrap();
        assert_eq!((meta.timestamp_delta, meta.key_len), (5, 1));
        assert_eq!(data.value.as_deref(), Some(&b"value"[..]));
        assert_eq!(data.headers.len(), 2);
        assert!(parse_record(&mut SliceSource::new(&out), 1, None).is_err(), "offset delta must match index");
        // key length claiming far more than the record holds
        let mut bad = Vec::new();
        encode_record(&mut bad, 0, 0, Some(b"k"), None, &[]);
        bad[4] = 0x7e; // key length varint 63
        assert!(parse_record(&mut SliceSource::new(&bad), 0, None).is_err());
    }
}
