//! Parsing and validation of magic v2 record batches as they arrive in Produce requests.
//!
//! A v2 batch is a 61-byte header followed by the records (compressed as a whole when the codec bits are set):
//!
//! ```text
//!  0 base_offset i64          27 base_timestamp i64
//!  8 batch_length i32         35 max_timestamp i64
//! 12 partition_leader_epoch   43 producer_id i64
//! 16 magic i8 (= 2)           51 producer_epoch i16
//! 17 crc u32 (CRC32C of 21..) 53 base_sequence i32
//! 21 attributes i16           57 record_count i32
//! 23 last_offset_delta i32    61 records...
//! ```
//!
//! [`validate_record_set`] checks everything a leader must check before storing client bytes as they are;
//! [`BatchBuilder`] writes batches (for tests and for coordinators that write their own records);
//! [`decode_records`] and [`for_each_record`] read records back out of a stored batch.

use bytes::Bytes;

use super::compression;
use super::record::{self, RecordData, SliceSource, Source, MIN_RECORD_BYTES};
use super::LogError;

/// Size of the fixed v2 batch header, from base offset through record count.
pub const BATCH_HEADER_BYTES: usize = 61;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The fixed header of one v2 record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after this field: the whole batch is `batch_length + 12` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn total_size(&self) -> usize {
        self.batch_length as usize + 12
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// The sequence of the last record, wrapping at i32::MAX as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        (last % (i32::MAX as i64 + 1)) as i32
    }
}


/// Byte positions of the header fields.
pub(crate) mod field {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = 8;
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const BASE_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
}

/// Bytes before `batch_length` starts counting (base offset and the length itself).
pub const LOG_OVERHEAD: usize = 12;
/// The smallest legal `batch_length`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32;

pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

fn corrupt(msg: impl Into<String>) -> LogError {
    LogError::CorruptMessage(msg.into())
}

fn invalid(msg: impl Into<String>) -> LogError {
    LogError::InvalidRecord(msg.into())
}

#[inline]
fn get_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
#[inline]
fn get_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline]
fn get_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl Compression {
    /// The codec in the low three attribute bits.
    pub fn from_attributes(attributes: i16) -> Result<Compression, LogError> {
        match attributes & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(LogError::UnsupportedCompression(other)),
        }
    }
    pub fn id(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

impl BatchHeader {
    /// Reads the fixed header from the first 61 bytes of `buf`, checking nothing but the length.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, LogError> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(corrupt(format!("batch header needs {BATCH_HEADER_BYTES} bytes, {} left", buf.len())));
        }
        Ok(BatchHeader {
            base_offset: get_i64(buf, field::BASE_OFFSET),
            batch_length: get_i32(buf, field::BATCH_LENGTH),
            partition_leader_epoch: get_i32(buf, field::PARTITION_LEADER_EPOCH),
            magic: buf[field::MAGIC] as i8,
            crc: get_i32(buf, field::CRC) as u32,
            attributes: get_i16(buf, field::ATTRIBUTES),
            last_offset_delta: get_i32(buf, field::LAST_OFFSET_DELTA),
            base_timestamp: get_i64(buf, field::BASE_TIMESTAMP),
            max_timestamp: get_i64(buf, field::MAX_TIMESTAMP),
            producer_id: get_i64(buf, field::PRODUCER_ID),
            producer_epoch: get_i16(buf, field::PRODUCER_EPOCH),
            base_sequence: get_i32(buf, field::BASE_SEQUENCE),
            record_count: get_i32(buf, field::RECORD_COUNT),
        })
    }
    pub fn compression(&self) -> Result<Compression, LogError> {
        Compression::from_attributes(self.attributes)
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    /// Offsets this batch takes in the log.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }
}

/// CRC32C of a whole batch as stored in its header (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(field::ATTRIBUTES..).unwrap_or_default())
}

/// Checks the framing of the batch at the start of `buf`: header present, magic 2, sane length, whole batch
/// present and at most `max_batch_bytes`, CRC. Returns its header; the batch is `buf[..header.total_size()]`.
pub fn check_batch_frame(buf: &[u8], max_batch_bytes: u32) -> Result<BatchHeader, LogError> {
    if buf.len() <= field::MAGIC {
        return Err(corrupt(format!("record set ends inside a batch header ({} bytes left)", buf.len())));
    }
    let magic = buf[field::MAGIC] as i8;
    if magic != 2 {
        return Err(invalid(format!("record batch magic {magic} is not supported (only magic 2)")));
    }
    let header = BatchHeader::parse(buf)?;
    if header.batch_length < MIN_BATCH_LENGTH {
        return Err(corrupt(format!("batch length {} is below the minimum {MIN_BATCH_LENGTH}", header.batch_length)));
    }
    let total = header.total_size();
    if total > buf.len() {
        return Err(corrupt(format!("batch of {total} bytes but only {} bytes left in the record set", buf.len())));
    }
    if total > max_batch_bytes as usize {
        return Err(LogError::RecordTooLarge { size: total, max: max_batch_bytes });
    }
    let crc = compute_crc(&buf[..total]);
    if crc != header.crc {
        return Err(corrupt(format!("batch CRC is {crc:#010x}, header says {:#010x}", header.crc)));
    }
    Ok(header)
}

/// Checks every batch in a Produce record set (size, magic 2, CRC32C, codec, decompressed records, offset
/// deltas, record count, keys when `require_keys`) and returns their headers in order.
///
/// The returned `max_timestamp` is the one computed from the records (Kafka rewrites it the same way), so the
/// leader stores a correct value even if the producer's header was wrong. Control batches are accepted (the
/// partition checks its own transaction markers with it; it refuses them from clients); each control record
/// must carry a key of at least 4 bytes (version and type).
pub fn validate_record_set(records: &[u8], max_message_bytes: u32, require_keys: bool) -> Result<Vec<BatchHeader>, LogError> {
    validate_record_set_with_limit(records, max_message_bytes, require_keys, None)
}

/// [`validate_record_set`] with an explicit cap on the decompressed size of each batch (default
/// [`compression::decompressed_limit`] of the batch size).
pub fn validate_record_set_with_limit(
    records: &[u8],
    max_message_bytes: u32,
    require_keys: bool,
    decompressed_limit: Option<u64>,
) -> Result<Vec<BatchHeader>, LogError> {
    if records.is_empty() {
        return Err(invalid("the record set holds no batch"));
    }
    let mut headers = Vec::with_capacity(1);
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        let mut header = check_batch_frame(rest, max_message_bytes)
            .map_err(|e| with_batch_context(e, headers.len(), pos))?;
        let batch = &rest[..header.total_size()];
        let limit = decompressed_limit.unwrap_or_else(|| compression::decompressed_limit(batch.len()));
        header.max_timestamp =
            validate_records(batch, &header, require_keys, limit).map_err(|e| with_batch_context(e, headers.len(), pos))?;
        headers.push(header);
        pos += batch.len();
    }
    Ok(headers)
}

fn with_batch_context(e: LogError, index: usize, pos: usize) -> LogError {
    match e {
        LogError::CorruptMessage(m) => corrupt(format!("batch {index} at byte {pos}: {m}")),
        LogError::InvalidRecord(m) => invalid(format!("batch {index} at byte {pos}: {m}")),
        other => other,
    }
}

/// Checks the records of one framed batch; returns the batch's real max timestamp.
fn validate_records(batch: &[u8], header: &BatchHeader, require_keys: bool, limit: u64) -> Result<i64, LogError> {
    let codec = header.compression()?;
    let count = header.record_count;
    if count < 0 {
        return Err(corrupt(format!("negative record count {count}")));
    }
    if header.last_offset_delta < 0 {
        return Err(corrupt(format!("negative last offset delta {}", header.last_offset_delta)));
    }
    if header.is_transactional() && !header.has_producer_id() {
        return Err(invalid("transactional batch without a producer id"));
    }
    // Transactional batches may come without a sequence: the group coordinator writes transactional offset
    // commits so (Kafka's coordinator origin); the partition refuses them from clients.
    if !header.is_control() && !header.is_transactional() && header.has_producer_id() && header.base_sequence < 0 {
        return Err(invalid(format!("batch with producer id {} has no base sequence", header.producer_id)));
    }
    if count == 0 {
        if !header.is_control() {
            return Err(invalid("batch holds no record"));
        }
        if header.last_offset_delta != 0 {
            return Err(corrupt(format!("empty control batch with last offset delta {}", header.last_offset_delta)));
        }
        return Ok(header.max_timestamp);
    }
    if header.last_offset_delta != count - 1 {
        return Err(corrupt(format!("record count {count} but last offset delta {}", header.last_offset_delta)));
    }
    let body = &batch[BATCH_HEADER_BYTES..];
    let control = header.is_control();
    let mut max_delta = i64::MIN;
    let check = |meta: &record::RecordMeta, index: i32| -> Result<(), LogError> {
        if meta.key_len < 0 && require_keys {
            return Err(invalid(format!("record {index} has no key, which a compacted topic requires")));
        }
        if control && meta.key_len < 4 {
            return Err(corrupt(format!("control record {index} has a key of {} bytes", meta.key_len)));
        }
        Ok(())
    };
    if codec == Compression::None {
        if count as usize > body.len() / MIN_RECORD_BYTES {
            return Err(corrupt(format!("record count {count} cannot fit in {} bytes", body.len())));
        }
        let mut src = SliceSource::new(body);
        walk(&mut src, count, &mut max_delta, check)?;
    } else {
        let mut src = record::StreamSource::new(compression::decoder(codec, body, limit)?);
        walk(&mut src, count, &mut max_delta, check)?;
    }
    header
        .base_timestamp
        .checked_add(max_delta)
        .ok_or_else(|| corrupt(format!("timestamp delta {max_delta} overflows the base timestamp")))
}

fn walk<S: Source>(
    src: &mut S,
    count: i32,
    max_delta: &mut i64,
    check: impl Fn(&record::RecordMeta, i32) -> Result<(), LogError>,
) -> Result<(), LogError> {
    for index in 0..count {
        let meta = record::parse_record(src, index, None)?;
        if meta.offset_delta != index {
            return Err(corrupt(format!("record {index} has offset delta {}", meta.offset_delta)));
        }
        check(&meta, index)?;
        *max_delta = (*max_delta).max(meta.timestamp_delta);
    }
    if !src.at_end()? {
        return Err(corrupt(format!("bytes left after the last of {count} records")));
    }
    Ok(())
}

/// One record read back from a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Calls `f(offset, timestamp)` for each record of a framed batch, in order, until `f` returns false. Under
/// LogAppendTime every record has the batch's max timestamp. Decompresses (bounded) when needed.
pub fn for_each_record(batch: &[u8], f: &mut dyn FnMut(i64, i64) -> bool) -> Result<(), LogError> {
    visit_records(batch, false, &mut |offset, timestamp, _| f(offset, timestamp))
}

/// Decodes every record of one framed batch, copying keys, values and headers out.
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    visit_records(batch, true, &mut |offset, timestamp, data| {
        let data = data.map(std::mem::take).unwrap_or_default();
        out.push(Record { offset, timestamp, key: data.key, value: data.value, headers: data.headers });
        true
    })?;
    Ok(out)
}

fn visit_records(
    batch: &[u8],
    capture: bool,
    f: &mut dyn FnMut(i64, i64, Option<&mut RecordData>) -> bool,
) -> Result<(), LogError> {
    let header = BatchHeader::parse(batch)?;
    let total = usize::try_from(header.batch_length).ok().filter(|&l| l >= MIN_BATCH_LENGTH as usize).map(|l| l + LOG_OVERHEAD);
    let Some(total) = total.filter(|&t| t <= batch.len()) else {
        return Err(corrupt(format!("batch length {} does not fit the {} bytes given", header.batch_length, batch.len())));
    };
    let body = &batch[BATCH_HEADER_BYTES..total];
    let codec = header.compression()?;
    if codec == Compression::None {
        visit_with(&mut SliceSource::new(body), &header, capture, f)
    } else {
        let limit = compression::decompressed_limit(body.len());
        visit_with(&mut record::StreamSource::new(compression::decoder(codec, body, limit)?), &header, capture, f)
    }
}

fn visit_with<S: Source>(
    src: &mut S,
    header: &BatchHeader,
    capture: bool,
    f: &mut dyn FnMut(i64, i64, Option<&mut RecordData>) -> bool,
) -> Result<(), LogError> {
    let log_append = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut data = RecordData::default();
    let mut previous_delta = -1i32;
    for index in 0..header.record_count.max(0) {
        let meta = record::parse_record(src, index, capture.then_some(&mut data))?;
        // Compacted batches have gaps between deltas, but deltas still grow and stay within the batch.
        if meta.offset_delta <= previous_delta || meta.offset_delta > header.last_offset_delta {
            return Err(corrupt(format!("record {index} has offset delta {} (previous {previous_delta}, last {})", meta.offset_delta, header.last_offset_delta)));
        }
        previous_delta = meta.offset_delta;
        let timestamp = if log_append { header.max_timestamp } else { header.base_timestamp.wrapping_add(meta.timestamp_delta) };
        let offset = header.base_offset + i64::from(meta.offset_delta);
        if !f(offset, timestamp, capture.then_some(&mut data)) {
            break;
        }
    }
    Ok(())
}

/// Splits a run of stored batches (e.g. what [`super::Log::read`] returns) into `(header, batch bytes)`.
/// Stops with an error at a batch whose framing is broken; does not check CRCs.
pub fn split_batches(data: &[u8]) -> impl Iterator<Item = Result<(BatchHeader, &[u8]), LogError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= data.len() {
            return None;
        }
        let rest = &data[pos..];
        let item = BatchHeader::parse(rest).and_then(|h| {
            if h.batch_length < MIN_BATCH_LENGTH || h.total_size() > rest.len() {
                Err(corrupt(format!("batch at byte {pos} has length {} with {} bytes left", h.batch_length, rest.len())))
            } else {
                Ok((h, &rest[..h.total_size()]))
            }
        });
        match &item {
            Ok((h, _)) => pos += h.total_size(),
            Err(_) => failed = true,
        }
        Some(item)
    })
}

/// Rewrites the fields the leader owns and re-computes the CRC. `log_append_time_ms` is Some under
/// LogAppendTime; otherwise the CreateTime bit is set and `max_timestamp` stored.
pub(crate) fn patch_batch(batch: &mut [u8], base_offset: i64, leader_epoch: i32, max_timestamp: i64, log_append_time_ms: Option<i64>) {
    debug_assert!(batch.len() >= BATCH_HEADER_BYTES);
    batch[field::BASE_OFFSET..field::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[field::PARTITION_LEADER_EPOCH..field::PARTITION_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
    let mut attributes = get_i16(batch, field::ATTRIBUTES);
    match log_append_time_ms {
        Some(now) => {
            attributes |= ATTR_TIMESTAMP_TYPE;
            batch[field::BASE_TIMESTAMP..field::BASE_TIMESTAMP + 8].copy_from_slice(&now.to_be_bytes());
            batch[field::MAX_TIMESTAMP..field::MAX_TIMESTAMP + 8].copy_from_slice(&now.to_be_bytes());
        }
        None => {
            attributes &= !ATTR_TIMESTAMP_TYPE;
            batch[field::MAX_TIMESTAMP..field::MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
        }
    }
    batch[field::ATTRIBUTES..field::ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(batch);
    batch[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A record for [`BatchBuilder`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NewRecord<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
}

/// Builds one v2 batch. Producer fields default to "none" (-1), the codec to none.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub compression: Compression,
    pub timestamp_type: TimestampType,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub control: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder {
            base_offset: 0,
            partition_leader_epoch: -1,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
        }
    }
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Encodes `records` (at least one) as one batch.
    pub fn build(&self, records: &[NewRecord<'_>]) -> Result<Vec<u8>, LogError> {
        if records.is_empty() {
            return Err(invalid("a batch needs at least one record"));
        }
        let count = i32::try_from(records.len()).map_err(|_| invalid("too many records for one batch"))?;
        let base_timestamp = records[0].timestamp_ms;
        let max_timestamp = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(base_timestamp);
        let mut body = Vec::new();
        for (i, r) in records.iter().enumerate() {
            record::encode_record(&mut body, i as i32, r.timestamp_ms - base_timestamp, r.key, r.value, r.headers);
        }
        let body = compression::compress(self.compression, &body)?;
        let mut attributes = self.compression.id();
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= ATTR_TIMESTAMP_TYPE;
        }
        if self.transactional {
            attributes |= ATTR_TRANSACTIONAL;
        }
        if self.control {
            attributes |= ATTR_CONTROL;
        }
        let total = BATCH_HEADER_BYTES + body.len();
        let batch_length = i32::try_from(total - LOG_OVERHEAD).map_err(|_| invalid("batch larger than 2 GiB"))?;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(2);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&attributes.to_be_bytes());
        out.extend_from_slice(&(count - 1).to_be_bytes());
        out.extend_from_slice(&base_timestamp.to_be_bytes());
        out.extend_from_slice(&max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&body);
        let crc = compute_crc(&out);
        out[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(out)
    }
}

/// The control record types of Kafka's `ControlRecordType`.
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;

/// What a transaction marker's control record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlRecord {
    /// true: COMMIT; false: ABORT.
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Builds the control batch of a transaction marker as Kafka writes it: transactional and control attributes,
/// the producer's id and epoch, no sequence, one record whose key is (version 0, type) and whose value is
/// (version 0, coordinator epoch).
pub fn control_batch(producer_id: i64, producer_epoch: i16, control: ControlRecord, timestamp_ms: i64) -> Result<Vec<u8>, LogError> {
    let kind = if control.commit { CONTROL_TYPE_COMMIT } else { CONTROL_TYPE_ABORT };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&control.coordinator_epoch.to_be_bytes());
    let builder = BatchBuilder { transactional: true, control: true, ..BatchBuilder::new().producer(producer_id, producer_epoch, -1) };
    builder.build(&[NewRecord { timestamp_ms, key: Some(&key), value: Some(&value), headers: &[] }])
}

/// Reads the marker of a framed control batch. None for control types other than COMMIT and ABORT (Kafka has
/// others, e.g. KRaft's, which transactions ignore); an error for a record too short to hold a key.
pub fn parse_control_batch(batch: &[u8]) -> Result<Option<ControlRecord>, LogError> {
    let records = decode_records(batch)?;
    let Some(record) = records.first() else { return Ok(None) };
    let key = record.key.as_deref().unwrap_or_default();
    if key.len() < 4 {
        return Err(corrupt(format!("control record key of {} bytes", key.len())));
    }
    let commit = match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        _ => return Ok(None),
    };
    // The value may be missing in batches written by very old brokers; the coordinator epoch is then unknown.
    let coordinator_epoch = match record.value.as_deref() {
        Some(value) if value.len() >= 6 => i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
        _ => -1,
    };
    Ok(Some(ControlRecord { commit, coordinator_epoch }))
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
