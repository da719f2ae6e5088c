"""Kafka transactions with confluent-kafka 2.16.1 (librdkafka 2.16): what
read_committed and read_uncommitted consumers see, the last stable offset,
zombie fencing and transaction.timeout.ms.

Every expected read is derived from delivery reports (partition, offset) and
compared exactly, per partition, in offset order."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaException, TopicPartition

from txn_helpers import (
    FENCED_CODES,
    READ_COMMITTED,
    READ_UNCOMMITTED,
    Sent,
    consumer,
    create_topic,
    describe,
    init_transactions,
    kafka_error,
    offsets_values,
    plain_producer,
    poll_records,
    poll_until,
    produce,
    read_all,
    txn_call,
    txn_producer,
    wait_until,
    watermarks,
)

PARTITIONS = [0, 1, 2]


def expected_by_partition(records, partitions) -> dict[int, list[tuple[int, bytes]]]:
    out = {p: [] for p in partitions}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.partition].append((r.offset, r.value))
    return out


def test_committed_and_aborted_transactions_interleaved_with_plain_writes(broker, topic):
    """5 transactions (commit, abort, commit, abort, commit) over 3 partitions,
    with a non-transactional idempotent producer writing before, during (while
    a transaction is open) and after each one.

    read_committed: exactly the committed and the plain records, in offset
    order per partition, no aborted one. read_uncommitted: every record,
    aborted ones included, and no control record: the offsets it skips are
    exactly one per (transaction, partition it touched), the COMMIT/ABORT
    markers, so the high watermark is records + markers."""
    create_topic(broker.bootstrap, topic, len(PARTITIONS))
    sent_txn, sent_plain = Sent(), Sent()
    plain = plain_producer(broker.bootstrap)
    txn = txn_producer(broker.bootstrap, f"txid-{topic}")

    produce(plain, topic, sent_plain, [(p, f"plain-before-p{p}") for p in PARTITIONS])
    init_transactions(txn)

    outcome: dict[int, str] = {}
    touched: dict[int, set[int]] = {}
    for t in range(5):
        action = "commit" if t % 2 == 0 else "abort"
        # Transactions 0, 2, 4 touch all partitions, 1 and 3 two of them.
        parts = PARTITIONS if t % 2 == 0 else [p for p in PARTITIONS if p != t % 3]
        touched[t] = set(parts)
        outcome[t] = action
        txn_call(f"begin_transaction #{t}", txn.begin_transaction)
        produce(txn, topic, sent_txn, [(p, f"txn{t}-{action}-p{p}-{i}") for p in parts for i in range(4)])
        # A plain write while the transaction is open: visible to read_committed
        # only once the transaction ends (it lies above the last stable offset).
        produce(plain, topic, sent_plain, [(p, f"plain-during-{t}-p{p}") for p in PARTITIONS])
        produce(txn, topic, sent_txn, [(p, f"txn{t}-{action}-p{p}-late") for p in parts])
        if action == "commit":
            txn_call(f"commit_transaction #{t}", txn.commit_transaction, 30)
        else:
            txn_call(f"abort_transaction #{t}", txn.abort_transaction, 30)
        produce(plain, topic, sent_plain, [(p, f"plain-after-{t}-p{p}") for p in PARTITIONS])

    def txn_of(value: bytes) -> int:
        return int(value.decode().split("-")[0][3:])

    committed = [r for r in sent_txn.records if outcome[txn_of(r.value)] == "commit"]
    aborted = [r for r in sent_txn.records if outcome[txn_of(r.value)] == "abort"]
    assert len(committed) == 3 * 3 * 5 and len(aborted) == 2 * 2 * 5

    want_committed = expected_by_partition(sent_plain.records + committed, PARTITIONS)
    want_all = expected_by_partition(sent_plain.records + sent_txn.records, PARTITIONS)

    got_committed = read_all(broker.bootstrap, topic, PARTITIONS, READ_COMMITTED)
    got_all = read_all(broker.bootstrap, topic, PARTITIONS, READ_UNCOMMITTED)
    for p in PARTITIONS:
        leaked = [v for _, v in offsets_values(got_committed[p]) if b"-abort-" in v]
        assert not leaked, f"partition {p}: read_committed returned aborted records {leaked[:5]}"
        assert offsets_values(got_committed[p]) == want_committed[p], f"partition {p}: read_committed"
        assert offsets_values(got_all[p]) == want_all[p], f"partition {p}: read_uncommitted"

        markers = sum(1 for t in touched if p in touched[t])
        low, high = watermarks(broker.bootstrap, topic, p, READ_UNCOMMITTED)
        assert (low, high) == (0, len(want_all[p]) + markers), (
            f"partition {p}: {len(want_all[p])} records and {markers} transaction markers, "
            f"but watermarks are {(low, high)}"
        )
        # Nothing is open any more: the last stable offset is the high watermark.
        assert watermarks(broker.bootstrap, topic, p, READ_COMMITTED) == (0, high), f"partition {p}: LSO"
        # The offsets nobody is given are exactly the markers' (one per transaction touching p).
        assert len(set(range(high)) - {o for o, _ in want_all[p]}) == markers


def test_last_stable_offset_hides_an_open_transaction_until_commit(broker, topic):
    """An open transaction holds the last stable offset at its first offset:
    read_committed consumers get the records below it only, including none of
    the plain records written after the transaction began, and ListOffsets
    (latest) answers the LSO for read_committed and the high watermark for
    read_uncommitted. After the commit the same consumer gets the
    transaction's records and the later plain ones, and both ends move past
    the commit marker."""
    create_topic(broker.bootstrap, topic, 1)
    plain = plain_producer(broker.bootstrap)
    txn = txn_producer(broker.bootstrap, f"txid-{topic}")
    sent = Sent()
    init_transactions(txn)

    produce(plain, topic, sent, [(0, f"plain-{i}") for i in range(3)])  # offsets 0..2
    txn_call("begin_transaction", txn.begin_transaction)
    produce(txn, topic, sent, [(0, f"txn-{i}") for i in range(5)])  # offsets 3..7, flushed: in the log
    produce(plain, topic, sent, [(0, f"plain-late-{i}") for i in range(2)])  # offsets 8, 9
    assert [(r.offset, r.value) for r in sent.records] == [(i, v) for i, v in enumerate(
        [b"plain-0", b"plain-1", b"plain-2", b"txn-0", b"txn-1", b"txn-2", b"txn-3", b"txn-4", b"plain-late-0",
         b"plain-late-1"])]

    assert watermarks(broker.bootstrap, topic, 0, READ_UNCOMMITTED) == (0, 10)
    assert watermarks(broker.bootstrap, topic, 0, READ_COMMITTED) == (0, 3), "LSO must be the open txn's first offset"

    uncommitted = consumer(broker.bootstrap, READ_UNCOMMITTED)
    committed = consumer(broker.bootstrap, READ_COMMITTED)
    try:
        uncommitted.assign([TopicPartition(topic, 0, 0)])
        committed.assign([TopicPartition(topic, 0, 0)])
        assert [r.offset for r in poll_until(uncommitted, 10)] == list(range(10))
        assert [r.offset for r in poll_until(committed, 3)] == [0, 1, 2]
        # Nothing more while the transaction is open, not even the later plain records.
        extra = poll_records(committed, 2.0)
        assert extra == [], f"read_committed returned records above the LSO: {offsets_values(extra)}"

        txn_call("commit_transaction", txn.commit_transaction, 30)

        after = poll_until(committed, 7)
        assert offsets_values(after) == [(i, r.value) for i, r in enumerate(sent.records) if i >= 3]
        assert poll_records(committed, 0.5) == []
        assert poll_records(uncommitted, 0.5) == [], "read_uncommitted must not be given the commit marker"
    finally:
        committed.close()
        uncommitted.close()

    # The commit marker took offset 10.
    assert watermarks(broker.bootstrap, topic, 0, READ_UNCOMMITTED) == (0, 11)
    assert watermarks(broker.bootstrap, topic, 0, READ_COMMITTED) == (0, 11)


def test_zombie_producer_is_fenced_by_a_new_instance(broker, topic):
    """Producer A (transactional.id X) has an open transaction with records in
    the log. Producer B initialises the same transactional.id: the broker
    aborts A's transaction and bumps the epoch. A's further produce and commit
    fail with a fatal fenced error, its write after the fencing never reaches
    the log, none of its records is ever visible to read_committed, and B
    commits normally."""
    create_topic(broker.bootstrap, topic, 2)
    txid = f"txid-{topic}"
    errors_a = []
    a = txn_producer(broker.bootstrap, txid, error_cb=errors_a.append)
    sent_a, sent_b = Sent(), Sent()
    init_transactions(a, "producer A")
    txn_call("A begin_transaction", a.begin_transaction)
    produce(a, topic, sent_a, [(p, f"zombie-{p}-{i}") for p in (0, 1) for i in range(3)])
    assert watermarks(broker.bootstrap, topic, 0, READ_COMMITTED) == (0, 0)

    b = txn_producer(broker.bootstrap, txid)
    init_transactions(b, "producer B (same transactional.id)")

    # B's init completed A's transaction (aborted): the LSO moved past A's
    # records and the abort marker, although nobody committed or aborted.
    for p in (0, 1):
        assert watermarks(broker.bootstrap, topic, p, READ_UNCOMMITTED) == (0, 4), f"partition {p}: 3 + abort marker"
        assert watermarks(broker.bootstrap, topic, p, READ_COMMITTED) == (0, 4), f"partition {p}: LSO after fencing"

    # A, the zombie, writes once more and tries to commit.
    late = Sent()
    for p in (0, 1):
        a.produce(topic, key=b"zombie-late", value=f"zombie-late-{p}".encode(), partition=p, on_delivery=late.callback)
    try:
        a.flush(15)
    except (KafkaException, SystemError):
        # confluent-kafka 2.16 raises the fatal _FENCED error out of flush() (as a
        # SystemError, when it happens inside a delivery callback).
        pass
    with pytest.raises(KafkaException) as info:
        a.commit_transaction(15)
    err = kafka_error(info.value)
    assert err.fatal(), f"A's commit after being fenced must fail fatally, got {describe(err)}"
    assert err.code() in FENCED_CODES, f"A's commit: expected a fenced error, got {describe(err)}"
    assert not late.records, f"A's late writes were acknowledged: {late.records}"
    with pytest.raises(KafkaException) as info:
        a.begin_transaction()
    assert kafka_error(info.value).fatal(), "a fenced producer must stay in its fatal state"

    txn_call("B begin_transaction", b.begin_transaction)
    produce(b, topic, sent_b, [(p, f"b-{p}-{i}") for p in (0, 1) for i in range(2)])
    txn_call("B commit_transaction", b.commit_transaction, 30)

    got_committed = read_all(broker.bootstrap, topic, [0, 1], READ_COMMITTED)
    got_all = read_all(broker.bootstrap, topic, [0, 1], READ_UNCOMMITTED)
    for p in (0, 1):
        assert [r.value for r in got_committed[p]] == [f"b-{p}-{i}".encode() for i in range(2)], f"partition {p}"
        # A's late write was refused by the partition leader (old epoch): not in the log at all.
        assert [r.value for r in got_all[p]] == [f"zombie-{p}-{i}".encode() for i in range(3)] + [
            f"b-{p}-{i}".encode() for i in range(2)
        ], f"partition {p}: the log must hold A's 3 aborted records, then B's 2, nothing from A after the fencing"
        # 3 zombie + abort marker + 2 + commit marker
        assert watermarks(broker.bootstrap, topic, p, READ_UNCOMMITTED) == (0, 7)


def test_transaction_timeout_aborts_on_the_broker(broker_factory, topic):
    """transaction.timeout.ms=2000 and a producer that goes silent with an
    open transaction: the broker aborts it by itself. Its records never become
    visible read_committed, the LSO moves past them (later plain records and
    a later transaction are readable), and the stale producer's commit
    fails."""
    broker = broker_factory(["--set", "transaction.abort.timed.out.transaction.cleanup.interval.ms=500"])
    create_topic(broker.bootstrap, topic, 1)
    plain = plain_producer(broker.bootstrap)
    sent = Sent()
    stale = txn_producer(broker.bootstrap, f"txid-stale-{topic}", **{"transaction.timeout.ms": 2000})
    init_transactions(stale, "producer with transaction.timeout.ms=2000")
    txn_call("begin_transaction", stale.begin_transaction)
    began = time.monotonic()  # the broker's transaction starts after this (AddPartitionsToTxn)
    produce(stale, topic, sent, [(0, f"stale-{i}") for i in range(3)])  # offsets 0..2
    produce(plain, topic, sent, [(0, f"plain-{i}") for i in range(2)])  # offsets 3, 4

    time.sleep(max(0.0, began + 1.0 - time.monotonic()))
    lso_early = watermarks(broker.bootstrap, topic, 0, READ_COMMITTED)
    if time.monotonic() - began < 1.5:  # only meaningful well before the timeout (a loaded machine may be late)
        assert lso_early == (0, 0), "1 s into a transaction with a 2 s timeout, the LSO must still be its first offset"
    # Timeout 2 s, cleanup every 0.5 s: aborted within a few seconds.
    wait_until(
        lambda: watermarks(broker.bootstrap, topic, 0, READ_COMMITTED)[1] > 0,
        10.0,
        "the broker to abort the timed-out transaction (LSO to move)",
        interval_s=0.2,
    )
    assert time.monotonic() - began >= 1.5, "the transaction was aborted long before transaction.timeout.ms"
    assert watermarks(broker.bootstrap, topic, 0, READ_UNCOMMITTED) == (0, 6), "3 + 2 records + abort marker"
    assert watermarks(broker.bootstrap, topic, 0, READ_COMMITTED) == (0, 6)

    with pytest.raises(KafkaException) as info:
        stale.commit_transaction(15)
    err = kafka_error(info.value)
    assert not err.retriable(), f"the commit of a transaction the broker aborted must fail for good: {describe(err)}"

    fresh = txn_producer(broker.bootstrap, f"txid-fresh-{topic}")
    init_transactions(fresh, "a second transactional producer")
    txn_call("begin_transaction", fresh.begin_transaction)
    produce(fresh, topic, sent, [(0, f"fresh-{i}") for i in range(2)])
    txn_call("commit_transaction", fresh.commit_transaction, 30)

    got = read_all(broker.bootstrap, topic, [0], READ_COMMITTED)[0]
    assert [r.value for r in got] == [b"plain-0", b"plain-1", b"fresh-0", b"fresh-1"]
    assert [r.offset for r in got] == [3, 4, 6, 7]
    got_all = read_all(broker.bootstrap, topic, [0], READ_UNCOMMITTED)[0]
    assert [r.value for r in got_all] == [b"stale-0", b"stale-1", b"stale-2", b"plain-0", b"plain-1", b"fresh-0",
                                         b"fresh-1"]
