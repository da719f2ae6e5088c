//! The records of the compacted internal topic `__transaction_state`, encoded as Kafka's transaction
//! coordinator writes them (transaction-coordinator/src/main/resources/common/message/TransactionLog*.json):
//!
//! - key: int16 version (0), then the transactional id (int16-length string);
//! - value: int16 version, then producer id (int64), producer epoch (int16), transaction timeout (int32),
//!   status (int8), the partitions in the transaction (nullable array of topic + int32 partition ids), last
//!   update and start timestamps (int64). Version 0 has int16/int32 lengths; version 1 (KIP-890) is the same
//!   fields "flexible" (compact lengths, tagged fields, which we skip). We write version 0.
//! - a null value is a tombstone: the transactional id expired.
//!
//! Decoding bounds every length by the bytes left and never panics on input.

use std::collections::BTreeSet;

use super::{TxnMetadata, TxnState};

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TxnRecordError {
    #[error("__transaction_state record truncated while reading {0}")]
    Truncated(&'static str),
    #[error("__transaction_state record: invalid {0}")]
    Invalid(&'static str),
    #[error("__transaction_state record: unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: i16 },
}

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&KEY_VERSION.to_be_bytes());
    put_string(&mut out, transactional_id);
    out
}

pub fn encode_value(value: &TxnMetadata) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&value.producer_id.to_be_bytes());
    out.extend_from_slice(&value.producer_epoch.to_be_bytes());
    out.extend_from_slice(&value.timeout_ms.to_be_bytes());
    out.push(value.state.code() as u8);
    let mut by_topic: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &value.partitions {
        match by_topic.last_mut() {
            Some((last, partitions)) if *last == topic.as_str() => partitions.push(*partition),
            _ => by_topic.push((topic.as_str(), vec![*partition])),
        }
    }
    out.extend_from_slice(&(by_topic.len() as i32).to_be_bytes());
    for (topic, partitions) in by_topic {
        put_string(&mut out, topic);
        out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for partition in partitions {
            out.extend_from_slice(&partition.to_be_bytes());
        }
    }
    out.extend_from_slice(&value.last_update_ms.to_be_bytes());
    out.extend_from_slice(&value.start_ms.to_be_bytes());
    out
}

/// The transactional id of a key.
pub fn decode_key(key: &[u8]) -> Result<String, TxnRecordError> {
    let mut reader = Reader { buf: key };
    let version = reader.i16("key version")?;
    if version != 0 {
        return Err(TxnRecordError::UnsupportedVersion { what: "key", version });
    }
    reader.string("transactional id")
}

pub fn decode_value(value: &[u8]) -> Result<TxnMetadata, TxnRecordError> {
    let mut r = Reader { buf: value };
    let version = r.i16("value version")?;
    let flexible = match version {
        0 => false,
        1 => true,
        _ => return Err(TxnRecordError::UnsupportedVersion { what: "value", version }),
    };
    let producer_id = r.i64("producer id")?;
    let producer_epoch = r.i16("producer epoch")?;
    let timeout_ms = r.i32("transaction timeout")?;
    let state = TxnState::from_code(r.i8("status")?).ok_or(TxnRecordError::Invalid("status"))?;
    let mut partitions = BTreeSet::new();
    if let Some(topics) = r.array_len(flexible, "partitions")? {
        for _ in 0..topics {
            let topic = if flexible { r.compact_string("topic")? } else { r.string("topic")? };
            let count = r.array_len(flexible, "partition ids")?.unwrap_or(0);
            for _ in 0..count {
                partitions.insert((topic.clone(), r.i32("partition id")?));
            }
            if flexible {
                r.skip_tagged_fields()?;
            }
        }
    }
    let last_update_ms = r.i64("last update timestamp")?;
    let start_ms = r.i64("start timestamp")?;
    if flexible {
        r.skip_tagged_fields()?;
    }
    Ok(TxnMetadata { producer_id, producer_epoch, timeout_ms, state, partitions, last_update_ms, start_ms, previous_epoch: -1 })
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    // Transactional ids and topic names are far below 32 KiB (the request decoders bound them).
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TxnRecordError> {
        if self.buf.len() < n {
            return Err(TxnRecordError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn i8(&mut self, what: &'static str) -> Result<i8, TxnRecordError> {
        Ok(self.take(1, what)?[0] as i8)
    }
    fn i16(&mut self, what: &'static str) -> Result<i16, TxnRecordError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, TxnRecordError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, TxnRecordError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn varint(&mut self, what: &'static str) -> Result<u64, TxnRecordError> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1, what)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(TxnRecordError::Invalid(what))
    }
    fn utf8(&mut self, len: usize, what: &'static str) -> Result<String, TxnRecordError> {
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| TxnRecordError::Invalid(what))
    }
    fn string(&mut self, what: &'static str) -> Result<String, TxnRecordError> {
        let len = usize::try_from(self.i16(what)?).map_err(|_| TxnRecordError::Invalid(what))?;
        self.utf8(len, what)
    }
    fn compact_string(&mut self, what: &'static str) -> Result<String, TxnRecordError> {
        let len = self.varint(what)?.checked_sub(1).ok_or(TxnRecordError::Invalid(what))?;
        self.utf8(usize::try_from(len).map_err(|_| TxnRecordError::Invalid(what))?, what)
    }
    /// An array's element count (None: null), bounded by the bytes left (every element takes at least one).
    fn array_len(&mut self, flexible: bool, what: &'static str) -> Result<Option<usize>, TxnRecordError> {
        let len = if flexible {
            match self.varint(what)? {
                0 => return Ok(None),
                n => n - 1,
            }
        } else {
            match self.i32(what)? {
                -1 => return Ok(None),
                n => u64::try_from(n).map_err(|_| TxnRecordError::Invalid(what))?,
            }
        };
        let len = usize::try_from(len).map_err(|_| TxnRecordError::Invalid(what))?;
        if len > self.buf.len() {
            return Err(TxnRecordError::Truncated(what));
        }
        Ok(Some(len))
    }
    fn skip_tagged_fields(&mut self) -> Result<(), TxnRecordError> {
        let count = self.varint("tagged fields")?;
        for _ in 0..count {
            self.varint("tag")?;
            let size = usize::try_from(self.varint("tagged field size")?).map_err(|_| TxnRecordError::Invalid("tagged field size"))?;
            self.take(size, "tagged field")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnMetadata {
        TxnMetadata {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("a".to_string(), 0), ("a".to_string(), 2), ("b".to_string(), 1)].into_iter().collect(),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
            previous_epoch: -1,
        }
    }

    #[test]
    fn values_round_trip_with_partitions_grouped_by_topic() {
        let value = sample();
        let bytes = encode_value(&value);
        // version, pid, epoch, timeout, status, 2 topics: "a" [0, 2], "b" [1], two timestamps
        assert_eq!(bytes.len(), 2 + 8 + 2 + 4 + 1 + 4 + (3 + 4 + 8) + (3 + 4 + 4) + 16);
        assert_eq!(decode_value(&bytes), Ok(value));
        assert_eq!(decode_key(&encode_key("my-txn")), Ok("my-txn".to_string()));
    }

    #[test]
    fn kafkas_flexible_version_1_is_read() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1i16.to_be_bytes());
        bytes.extend_from_slice(&77i64.to_be_bytes());
        bytes.extend_from_slice(&2i16.to_be_bytes());
        bytes.extend_from_slice(&1000i32.to_be_bytes());
        bytes.push(4); // CompleteCommit
        bytes.push(2); // one topic
        bytes.push(2); // "t"
        bytes.push(b't');
        bytes.push(2); // one partition
        bytes.extend_from_slice(&5i32.to_be_bytes());
        bytes.push(0); // topic tagged fields
        bytes.extend_from_slice(&10i64.to_be_bytes());
        bytes.extend_from_slice(&9i64.to_be_bytes());
        bytes.extend_from_slice(&[1, 0, 2, 0xff, 0xff]); // one tagged field (tag 0, 2 bytes)
        let value = decode_value(&bytes).expect("decode");
        assert_eq!((value.producer_id, value.producer_epoch, value.state), (77, 2, TxnState::CompleteCommit));
        assert_eq!(value.partitions.into_iter().collect::<Vec<_>>(), vec![("t".to_string(), 5)]);
    }

    #[test]
    fn truncated_or_hostile_input_is_an_error_not_a_panic() {
        let bytes = encode_value(&sample());
        for cut in 0..bytes.len() {
            assert!(decode_value(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = bytes.clone();
        // claim 2^31-1 topics
        huge[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_value(&huge).is_err());
        let mut bad_status = bytes;
        bad_status[16] = 42;
        assert_eq!(decode_value(&bad_status), Err(TxnRecordError::Invalid("status")));
        assert!(decode_key(&[0, 1]).is_err());
    }
}
