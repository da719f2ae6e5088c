//! Reading a partition back from its log start to its log end, batch by batch: how the group and transaction
//! coordinators load the internal partition they start to lead. Up to the log end, not the high watermark, as
//! Kafka's coordinators load: a new leader's log is the partition's truth, and its high watermark may lag
//! until the followers have fetched again.

use crate::log::batch::{self, Record};
use crate::log::{BatchHeader, LogError};

use super::{Partition, PartitionError};

/// Bytes read per step; the task yields between steps so a long load does not hold a runtime worker.
const READ_BYTES: usize = 1 << 20;

/// What the log holds, in offset order.
pub enum Replayed<'a> {
    /// A record of a data batch (`header` tells whether it is transactional, and whose).
    Record { header: &'a BatchHeader, record: Record },
    /// A control batch (a transaction marker), whole.
    Control { header: &'a BatchHeader, bytes: &'a [u8] },
    /// A batch whose records do not decode: skipped.
    Undecodable { header: &'a BatchHeader, error: LogError },
}

/// Calls `visit` with every record and control batch from the log start to the log end offset at the call.
/// Stops early (returning the error) only when the log cannot be read.
pub async fn replay_to_end(partition: &Partition, mut visit: impl FnMut(Replayed<'_>)) -> Result<(), PartitionError> {
    let offsets = partition.offsets();
    let mut next = offsets.log_start_offset;
    while next < offsets.log_end_offset {
        let data = partition.read_log(next, READ_BYTES, true)?;
        let before = next;
        for item in batch::split_batches(&data.records) {
            let Ok((header, bytes)) = item else { break };
            if header.last_offset() < next {
                continue;
            }
            if header.is_control() {
                visit(Replayed::Control { header: &header, bytes });
            } else {
                match batch::decode_records(bytes) {
                    Ok(records) => {
                        for record in records.into_iter().filter(|r| r.offset >= next) {
                            visit(Replayed::Record { header: &header, record });
                        }
                    }
                    Err(error) => visit(Replayed::Undecodable { header: &header, error }),
                }
            }
            next = header.last_offset() + 1;
        }
        if next <= before {
            // Nothing whole came back: a torn tail the log will truncate at its next recovery.
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}
