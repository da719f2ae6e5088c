use super::*;

fn shard() -> TxnShard {
    TxnShard::new(TxnConfig { max_timeout_ms: 900_000, id_expiration_ms: 604_800_000 })
}

fn parts(list: &[(&str, i32)]) -> Vec<(String, i32)> {
    list.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

/// Replays every written record into a fresh shard, as a reload would.
fn reloaded(writes: &[(String, Option<TxnMetadata>)]) -> TxnShard {
    let mut fresh = shard();
    for (id, value) in writes {
        // Through the codec, as the runtime stores them.
        let value = value.as_ref().map(|v| records::decode_value(&records::encode_value(v)).expect("codec"));
        fresh.replay(id.clone(), value);
    }
    fresh
}

#[test]
fn a_commit_goes_through_prepare_markers_and_complete() {
    let mut s = shard();
    let mut log = Vec::new();
    let init = s.init_producer_id("t", 60_000, None, 1000, 1);
    assert_eq!(init.reply, Ok((1000, 0)));
    log.extend(init.write);
    let add = s.add_partitions("t", 1000, 0, &parts(&[("a", 0), ("b", 1)]), 2);
    assert_eq!(add.reply, Ok(()));
    log.extend(add.write);
    assert_eq!(s.get("t").map(|t| (t.state, t.start_ms)), Some((TxnState::Ongoing, 2)));
    // Adding a partition already in the transaction writes nothing.
    assert!(s.add_partitions("t", 1000, 0, &parts(&[("a", 0)]), 3).write.is_none());
    let end = s.end_txn("t", 1000, 0, true, 4);
    assert_eq!(end.reply, Ok(()));
    log.extend(end.write);
    let job = end.markers.expect("markers");
    assert_eq!((job.commit, job.producer_epoch, job.partitions.clone()), (true, 0, parts(&[("a", 0), ("b", 1)])));
    // While the markers are out, the next transaction waits.
    assert_eq!(s.add_partitions("t", 1000, 0, &parts(&[("a", 0)]), 5).reply, Err(TxnError::ConcurrentTransactions));
    assert_eq!(s.end_txn("t", 1000, 0, true, 5).reply, Err(TxnError::ConcurrentTransactions));
    assert_eq!(s.end_txn("t", 1000, 0, false, 5).reply, Err(TxnError::InvalidTxnState));
    // A reload in between resends the markers.
    assert_eq!(reloaded(&log).pending_markers(), vec![job.clone()]);
    let done = s.complete(&job, 6);
    log.extend(done.write);
    let txn = s.get("t").expect("txn").clone();
    assert_eq!((txn.state, txn.partitions.len(), txn.start_ms), (TxnState::CompleteCommit, 0, -1));
    // A retried EndTxn of the same outcome succeeds; the other outcome does not.
    assert_eq!(s.end_txn("t", 1000, 0, true, 7).reply, Ok(()));
    assert_eq!(s.end_txn("t", 1000, 0, false, 7).reply, Err(TxnError::InvalidTxnState));
    assert_eq!(reloaded(&log).get("t"), Some(&txn));
    assert!(reloaded(&log).pending_markers().is_empty());
}

#[test]
fn init_while_ongoing_fences_the_old_epoch_and_aborts() {
    let mut s = shard();
    s.init_producer_id("t", 60_000, None, 7, 0);
    s.add_partitions("t", 7, 0, &parts(&[("a", 0)]), 1);
    let fence = s.init_producer_id("t", 60_000, None, 8, 2);
    assert_eq!(fence.reply, Err(TxnError::ConcurrentTransactions));
    let job = fence.markers.expect("abort markers");
    assert_eq!((job.commit, job.producer_id, job.producer_epoch), (false, 7, 1));
    // The zombie (epoch 0) is fenced everywhere at the coordinator.
    assert_eq!(s.end_txn("t", 7, 0, true, 3).reply, Err(TxnError::ProducerFenced));
    assert_eq!(s.add_partitions("t", 7, 0, &parts(&[("a", 1)]), 3).reply, Err(TxnError::ProducerFenced));
    assert_eq!(s.init_producer_id("t", 60_000, None, 9, 3).reply, Err(TxnError::ConcurrentTransactions));
    s.complete(&job, 4);
    // The retried InitProducerId gets the next epoch.
    assert_eq!(s.init_producer_id("t", 60_000, None, 9, 5).reply, Ok((7, 2)));
    assert_eq!(s.get("t").map(|t| t.state), Some(TxnState::Empty));
}

#[test]
fn producer_id_and_epoch_checks() {
    let mut s = shard();
    assert_eq!(s.add_partitions("nobody", 1, 0, &parts(&[("a", 0)]), 0).reply, Err(TxnError::InvalidProducerIdMapping));
    assert_eq!(s.end_txn("nobody", 1, 0, true, 0).reply, Err(TxnError::InvalidProducerIdMapping));
    s.init_producer_id("t", 1000, None, 5, 0);
    assert_eq!(s.add_partitions("t", 6, 0, &parts(&[("a", 0)]), 0).reply, Err(TxnError::InvalidProducerIdMapping));
    assert_eq!(s.add_partitions("t", 5, 1, &parts(&[("a", 0)]), 0).reply, Err(TxnError::ProducerFenced));
    // EndTxn with nothing begun.
    assert_eq!(s.end_txn("t", 5, 0, true, 0).reply, Err(TxnError::InvalidTxnState));
    // Timeouts are bounded by transaction.max.timeout.ms.
    assert_eq!(s.init_producer_id("t", 0, None, 5, 0).reply, Err(TxnError::InvalidTransactionTimeout));
    assert_eq!(s.init_producer_id("t", 900_001, None, 5, 0).reply, Err(TxnError::InvalidTransactionTimeout));
    // KIP-360: re-initialising with the current id and epoch bumps it; a retry of that call (its answer lost)
    // gets the same answer, an older pair is fenced, and so is the retry once the epoch moved on again.
    assert_eq!(s.init_producer_id("t", 1000, Some((5, 0)), 6, 1).reply, Ok((5, 1)));
    let retry = s.init_producer_id("t", 1000, Some((5, 0)), 6, 1);
    assert_eq!((retry.reply, retry.write), (Ok((5, 1)), None));
    assert_eq!(s.init_producer_id("t", 1000, Some((5, 1)), 6, 1).reply, Ok((5, 2)));
    assert_eq!(s.init_producer_id("t", 1000, Some((5, 0)), 6, 1).reply, Err(TxnError::ProducerFenced));
    assert_eq!(s.init_producer_id("t", 1000, Some((9, 2)), 6, 1).reply, Err(TxnError::ProducerFenced));
    // Without an expected pair (a new producer instance) the previous epoch is forgotten: 2 is fenced for good.
    assert_eq!(s.init_producer_id("t", 1000, None, 6, 1).reply, Ok((5, 3)));
    assert_eq!(s.init_producer_id("t", 1000, Some((5, 2)), 6, 1).reply, Err(TxnError::ProducerFenced));
    assert_eq!(TxnError::ProducerFenced.code_for(1, 2), ResponseError::InvalidProducerEpoch.code());
    assert_eq!(TxnError::ProducerFenced.code_for(2, 2), ResponseError::ProducerFenced.code());
}

#[test]
fn exhausted_epochs_rotate_the_producer_id() {
    let mut s = shard();
    s.init_producer_id("t", 1000, None, 5, 0);
    let mut value = s.get("t").expect("txn").clone();
    value.producer_epoch = i16::MAX - 1;
    s.replay("t".into(), Some(value));
    assert_eq!(s.init_producer_id("t", 1000, None, 99, 1).reply, Ok((99, 0)));
}

#[test]
fn timed_out_transactions_are_aborted_under_a_new_epoch() {
    let mut s = shard();
    s.init_producer_id("slow", 1000, None, 1, 0);
    s.add_partitions("slow", 1, 0, &parts(&[("a", 0)]), 100);
    s.init_producer_id("fast", 1000, None, 2, 0);
    s.add_partitions("fast", 2, 0, &parts(&[("a", 1)]), 900);
    assert!(s.abort_timed_out(1100).is_empty(), "exactly at the timeout is not yet over it");
    let steps = s.abort_timed_out(1101);
    assert_eq!(steps.len(), 1);
    let job = steps[0].markers.clone().expect("markers");
    assert_eq!((job.transactional_id.as_str(), job.commit, job.producer_epoch), ("slow", false, 1));
    assert_eq!(s.end_txn("slow", 1, 0, true, 1200).reply, Err(TxnError::ProducerFenced));
    assert_eq!(s.get("fast").map(|t| t.state), Some(TxnState::Ongoing));
}

#[test]
fn idle_transactional_ids_expire_as_tombstones() {
    let mut s = TxnShard::new(TxnConfig { max_timeout_ms: 900_000, id_expiration_ms: 1000 });
    s.init_producer_id("idle", 1000, None, 1, 0);
    s.init_producer_id("busy", 1000, None, 2, 0);
    s.add_partitions("busy", 2, 0, &parts(&[("a", 0)]), 0);
    let steps = s.expire_ids(5000);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].write, Some(("idle".to_string(), None)));
    assert!(s.get("idle").is_none() && s.get("busy").is_some());
    let mut log = vec![(String::from("idle"), Some(TxnMetadata {
        producer_id: 1,
        producer_epoch: 0,
        timeout_ms: 1000,
        state: TxnState::Empty,
        partitions: BTreeSet::new(),
        last_update_ms: 0,
        start_ms: -1,
        previous_epoch: -1,
    }))];
    log.extend(steps.into_iter().filter_map(|s| s.write));
    assert!(reloaded(&log).get("idle").is_none());
}

#[test]
fn state_names_and_codes_round_trip() {
    for state in TxnState::ALL {
        assert_eq!(TxnState::from_code(state.code()), Some(state));
        assert_eq!(TxnState::from_name(state.name()), Some(state));
    }
}
