"""Transactions on a 3-node cluster (harness/cluster.py, RF 3) through a
kill -9 of the transaction coordinator.

A confluent-kafka transactional producer commits one transaction, opens a
second one (records on every partition, acknowledged by all replicas), and
the node that FindCoordinator names as its transaction coordinator is killed
with SIGKILL. The commit of the open transaction must succeed against the new
coordinator (the transaction state is replicated), a further transaction
commits and another aborts with the node still down, and read_committed
returns exactly the three committed transactions' records, in order, on
every partition."""

from __future__ import annotations

import pytest

from txn_helpers import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    Sent,
    create_topic,
    init_transactions,
    produce,
    read_all,
    txn_call,
    txn_producer,
    wait_until,
)
from txn_wire import describe_transactions, find_transaction_coordinator

pytestmark = pytest.mark.needs_cluster

PARTITIONS = [0, 1, 2]


def test_commit_survives_kill9_of_the_transaction_coordinator(cluster, topic):
    create_topic(cluster.bootstrap, topic, len(PARTITIONS), replication_factor=3)
    for n in cluster.alive():
        cluster.wait_isr(topic, 3, timeout_s=30.0, node=n)
    txid = f"cluster-txid-{topic}"
    p = txn_producer(
        cluster.bootstrap, txid,
        **{"socket.connection.setup.timeout.ms": 3000, "retry.backoff.max.ms": 500, "transaction.timeout.ms": 60000},
    )
    sent = Sent()
    init_transactions(p)

    def txn(tag: str, action: str) -> None:
        txn_call(f"begin_transaction {tag}", p.begin_transaction)
        produce(p, topic, sent, [(q, f"{tag}-p{q}-{i}") for q in PARTITIONS for i in range(5)])
        if action == "commit":
            txn_call(f"commit_transaction {tag}", p.commit_transaction, 60)
        elif action == "abort":
            txn_call(f"abort_transaction {tag}", p.abort_transaction, 60)

    txn("t1", "commit")
    txn("t2", "open")

    first = cluster.broker(cluster.alive()[0])
    coordinator = wait_until(
        lambda: (c := find_transaction_coordinator(first.host, first.port, txid)).error_code == 0 and c,
        10.0, "FindCoordinator(TRANSACTION) to name a coordinator",
    )
    assert coordinator.node_id in cluster.node_ids, coordinator
    cluster.kill(coordinator.node_id)

    def describe_on_survivors():
        found = {}
        for n in cluster.alive():
            b = cluster.broker(n)
            c = find_transaction_coordinator(b.host, b.port, txid)
            if c.error_code == 0 and c.node_id in cluster.alive():
                owner = cluster.broker(c.node_id)
                found[f"node {c.node_id}"] = describe_transactions(owner.host, owner.port, [txid])
                break
            found[f"node {n}"] = c
        return found

    survivor = cluster.broker(cluster.alive()[0])
    try:
        txn_call("commit_transaction t2 after the coordinator's kill -9", p.commit_transaction, 60)
        txn("t3", "commit")
        txn("t4", "abort")
    except (AssertionError, pytest.fail.Exception) as e:
        raise AssertionError(f"{e}\n(the transaction as the new coordinator describes it: {describe_on_survivors()})")

    moved = find_transaction_coordinator(survivor.host, survivor.port, txid)
    assert moved.error_code == 0 and moved.node_id != coordinator.node_id, moved

    committed = read_all(cluster.bootstrap, topic, PARTITIONS, READ_COMMITTED, timeout_s=30)
    everything = read_all(cluster.bootstrap, topic, PARTITIONS, READ_UNCOMMITTED, timeout_s=30)
    for q in PARTITIONS:
        want = [f"{t}-p{q}-{i}".encode() for t in ("t1", "t2", "t3") for i in range(5)]
        assert [r.value for r in committed[q]] == want, f"partition {q}: read_committed"
        assert [r.value for r in everything[q]] == want + [f"t4-p{q}-{i}".encode() for i in range(5)], \
            f"partition {q}: read_uncommitted"
