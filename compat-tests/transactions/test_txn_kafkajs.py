"""Transactions with kafkajs 2.2.4 (compat-tests/kafkajs/runner.js commands
`transactions` and `consume`).

An idempotent transactional producer (maxInFlightRequests 1) commits a
transaction, aborts one, commits one that also sends consumer-group offsets
(sendOffsets), and aborts one with offsets. A kafkajs group consumer with
readUncommitted: false gets exactly the committed records; one with
readUncommitted: true gets all of them, and librdkafka read_committed agrees.
The group offsets are those of the committed transaction only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from txn_helpers import READ_COMMITTED, create_topic, read_all

RUNNER = Path(__file__).resolve().parents[1] / "kafkajs" / "runner.js"
FAST_GROUPS = ["--set", "group.initial.rebalance.delay.ms=0", "--set", "group.min.session.timeout.ms=1000"]


def kafkajs(broker, command: str, **args):
    proc = subprocess.run(
        ["node", str(RUNNER), broker.bootstrap, command, json.dumps(args)],
        capture_output=True, text=True, timeout=90,
    )
    if proc.returncode != 0:
        pytest.fail(f"kafkajs {command} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return json.loads(proc.stdout)


def msgs(tag: str, partitions: list[int], per_partition: int) -> list[dict]:
    return [{"partition": p, "key": f"{tag}-p{p}-{i}", "value": f"{tag}-p{p}-{i}"}
            for p in partitions for i in range(per_partition)]


def test_kafkajs_transactions_and_read_committed_consumer(broker_factory, topic):
    broker = broker_factory(FAST_GROUPS)
    create_topic(broker.bootstrap, topic, 2)
    offsets_group = f"js-offsets-{topic}"
    plan = [
        {"action": "commit", "messages": msgs("c1", [0, 1], 3)},
        {"action": "abort", "messages": msgs("a1", [0, 1], 2)},
        {"action": "commit", "messages": msgs("c2", [1], 2),
         "offsets": [{"topic": topic, "partition": 0, "offset": 7}, {"topic": topic, "partition": 1, "offset": 3}]},
        {"action": "abort", "messages": msgs("a2", [0], 1),
         "offsets": [{"topic": topic, "partition": 0, "offset": 11}]},
    ]
    out = kafkajs(broker, "transactions", topic=topic, transactionalId=f"js-txid-{topic}",
                  offsetsGroup=offsets_group, transactions=plan)
    assert [t["action"] for t in out["transactions"]] == [s["action"] for s in plan]
    for t in out["transactions"]:
        assert all(r["errorCode"] == 0 for r in t["results"]), t

    committed = {p: [m["value"] for s in plan if s["action"] == "commit" for m in s["messages"] if m["partition"] == p]
                 for p in (0, 1)}
    everything = {p: [m["value"] for s in plan for m in s["messages"] if m["partition"] == p] for p in (0, 1)}

    def by_partition(messages):
        out = {0: [], 1: []}
        for m in sorted(messages, key=lambda m: (m["partition"], int(m["offset"]))):
            out[m["partition"]].append(m["value"])
        return out

    rc = kafkajs(broker, "consume", topic=topic, groupId=f"js-rc-{topic}", readUncommitted=False,
                 count=sum(map(len, committed.values())), settleMs=1500)
    assert not rc["timedOut"], f"kafkajs read_committed consumer got only {rc['messages']}"
    assert by_partition(rc["messages"]) == committed

    ru = kafkajs(broker, "consume", topic=topic, groupId=f"js-ru-{topic}", readUncommitted=True,
                 count=sum(map(len, everything.values())), settleMs=1500)
    assert not ru["timedOut"], f"kafkajs read_uncommitted consumer got only {ru['messages']}"
    assert by_partition(ru["messages"]) == everything

    rd = read_all(broker.bootstrap, topic, [0, 1], READ_COMMITTED)
    assert {p: [r.value.decode() for r in recs] for p, recs in rd.items()} == committed

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": offsets_group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=15)
    finally:
        c.close()
    assert {tp.partition: tp.offset for tp in got} == {0: 7, 1: 3}, "offsets of the committed transaction only"
