"""Transaction admin APIs: ListTransactions, DescribeTransactions and
DescribeProducers, around a confluent-kafka transaction that is open and
then committed.

No pinned client can send these (see txn_wire.py: confluent-kafka 2.16.1's
AdminClient lacks list_transactions / describe_transactions /
describe_producers, and so do kafka-python 2.3.3, aiokafka 0.14.0 and
kafkajs 2.2.4), so they are encoded by hand as Kafka's AdminClient sends them
(kafka-transactions.sh list / describe / describe-producers)."""

from __future__ import annotations

import time

from harness import wire

from txn_helpers import Sent, create_topic, init_transactions, plain_producer, produce, txn_call, txn_producer
from txn_wire import (
    DESCRIBE_PRODUCERS,
    DESCRIBE_TRANSACTIONS,
    LIST_TRANSACTIONS,
    describe_producers,
    describe_transactions,
    list_transactions,
)

TRANSACTIONAL_ID_NOT_FOUND = 105


def test_list_and_describe_transactions_and_producers(broker, topic):
    create_topic(broker.bootstrap, topic, 2)
    host, port = broker.host, broker.port
    txid = f"admin-txid-{topic}"
    sent = Sent()
    produce(plain_producer(broker.bootstrap), topic, sent, [(0, "plain-0"), (0, "plain-1")])  # p0 offsets 0, 1

    p = txn_producer(broker.bootstrap, txid, **{"transaction.timeout.ms": 45000})
    init_transactions(p)
    began_ms = int(time.time() * 1000)
    txn_call("begin_transaction", p.begin_transaction)
    produce(p, topic, sent, [(0, f"txn-p0-{i}") for i in range(3)] + [(1, f"txn-p1-{i}") for i in range(2)])
    starts = {q: min(r.offset for r in sent.records if r.value.startswith(f"txn-p{q}".encode())) for q in (0, 1)}
    assert starts == {0: 2, 1: 0}

    ranges = wire.api_versions(host, port).api_ranges
    for key, name in ((DESCRIBE_TRANSACTIONS, "DescribeTransactions"), (LIST_TRANSACTIONS, "ListTransactions")):
        assert key in ranges, f"ApiVersions does not list {name} ({key})"

    # DescribeTransactions: the open transaction, and an unknown id.
    desc, unknown = describe_transactions(host, port, [txid, f"no-such-{txid}"])
    assert unknown.transactional_id == f"no-such-{txid}" and unknown.error_code == TRANSACTIONAL_ID_NOT_FOUND
    assert (desc.error_code, desc.transactional_id, desc.state, desc.timeout_ms) == (0, txid, "Ongoing", 45000)
    assert began_ms - 1000 <= desc.start_time_ms <= int(time.time() * 1000) + 1000, desc
    assert {t: sorted(ps) for t, ps in desc.topics.items()} == {topic: [0, 1]}
    assert desc.producer_id >= 0 and desc.producer_epoch >= 0

    # ListTransactions, with and without filters.
    listing = list_transactions(host, port)
    assert listing.error_code == 0 and listing.unknown_state_filters == []
    assert (txid, desc.producer_id, "Ongoing") in listing.transactions
    assert (txid, desc.producer_id, "Ongoing") in list_transactions(host, port, ["Ongoing"]).transactions
    assert txid not in [t for t, _, _ in list_transactions(host, port, ["CompleteCommit"]).transactions]
    assert [t for t, _, _ in list_transactions(host, port, producer_id_filters=[desc.producer_id]).transactions] \
        == [txid]
    bogus = list_transactions(host, port, ["Bogus"])
    assert bogus.unknown_state_filters == ["Bogus"] and bogus.transactions == [], bogus

    # DescribeProducers: per partition, the transactional producer with its
    # open transaction's first offset, and the plain idempotent one without.
    assert DESCRIBE_PRODUCERS in ranges, f"ApiVersions does not list DescribeProducers ({DESCRIBE_PRODUCERS})"
    parts = {d.partition: d for d in describe_producers(host, port, topic, [0, 1])}
    assert sorted(parts) == [0, 1]
    for q, last_seq in ((0, 2), (1, 1)):
        assert parts[q].error_code == 0, parts[q]
        txn_states = [s for s in parts[q].producers if s.producer_id == desc.producer_id]
        assert len(txn_states) == 1, f"partition {q}: transactional producer not listed: {parts[q].producers}"
        (s,) = txn_states
        assert s.producer_epoch == desc.producer_epoch
        assert s.current_txn_start_offset == starts[q], f"partition {q}: {s}"
        assert s.last_sequence == last_seq, f"partition {q}: {s}"
        assert began_ms - 1000 <= s.last_timestamp <= int(time.time() * 1000) + 1000, s
    others = [s for s in parts[0].producers if s.producer_id != desc.producer_id]
    assert len(others) == 1 and others[0].current_txn_start_offset == -1 and others[0].last_sequence == 1, others
    assert [s.producer_id for s in parts[1].producers] == [desc.producer_id]

    txn_call("commit_transaction", p.commit_transaction, 30)

    deadline = time.monotonic() + 10
    while True:
        (after,) = describe_transactions(host, port, [txid])
        if after.state == "CompleteCommit" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (after.error_code, after.state, after.producer_id) == (0, "CompleteCommit", desc.producer_id), after
    assert after.topics == {}, "a completed transaction has no partitions"
    assert txid not in [t for t, _, _ in list_transactions(host, port, ["Ongoing"]).transactions]

    for d in describe_producers(host, port, topic, [0, 1]):
        (s,) = [s for s in d.producers if s.producer_id == desc.producer_id]
        assert s.current_txn_start_offset == -1, f"partition {d.partition}: still in a transaction after commit: {s}"
