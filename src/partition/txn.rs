//! Transactions as a partition sees them (KIP-98): which producers have a transaction open here (from their
//! first transactional batch to the control batch, the "marker", that ends it), the last stable offset derived
//! from them, and the index of aborted transactions that read_committed fetches return.

/// A commit or abort marker for one producer, written by the transaction coordinator (WriteTxnMarkers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// true: COMMIT marker (control type 1); false: ABORT (control type 0).
    pub commit: bool,
    /// The epoch of the coordinator that wrote it (its __transaction_state partition's leader epoch).
    pub coordinator_epoch: i32,
}

/// An aborted transaction, as Fetch returns it to read_committed consumers: the records of `producer_id` from
/// `first_offset` up to its abort marker are to be skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
}
