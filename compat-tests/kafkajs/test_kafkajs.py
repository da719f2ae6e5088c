"""kafkajs (pinned in package.json) against odradek.

runner.js performs the kafkajs calls; these tests check its results and read
the produced records back with librdkafka (kafkajs consumers need consumer
groups, which odradek does not have yet)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from harness.readback import read_partition

RUNNER = Path(__file__).resolve().parent / "runner.js"


def kafkajs(broker, command: str, **args):
    proc = subprocess.run(
        ["node", str(RUNNER), broker.bootstrap, command, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    if proc.returncode != 0:
        pytest.fail(f"kafkajs {command} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return json.loads(proc.stdout)


def message(i: int, partition: int = 0) -> dict:
    return {
        "partition": partition,
        "key": f"key-{i}",
        "value": f"value-{i}-" + "x" * (i % 7),
        "headers": {"seq": str(i), "origin": "kafkajs"},
    }


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "plain"])
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_produce_then_read_back(broker, topic, idempotent, compression):
    sends = [[message(i) for i in range(start, start + 10)] for start in (0, 10, 20)]
    out = kafkajs(
        broker, "produce", topic=topic, idempotent=idempotent, acks=-1 if idempotent else 1,
        compression=compression, sends=sends,
    )
    # One partition result per send, offsets contiguous in send order.
    assert [r[0]["errorCode"] for r in out["results"]] == [0, 0, 0]
    assert [int(r[0]["baseOffset"]) for r in out["results"]] == [0, 10, 20]

    records = read_partition(broker.bootstrap, topic)
    assert [r.offset for r in records] == list(range(30))
    for i, r in enumerate(records):
        expected = message(i)
        assert r.key == expected["key"].encode()
        assert r.value == expected["value"].encode()
        assert r.headers == (("seq", str(i).encode()), ("origin", b"kafkajs"))


def test_produce_acks_zero_still_writes(broker, topic):
    kafkajs(broker, "create-topic", topic=topic, partitions=1)
    kafkajs(broker, "produce", topic=topic, idempotent=False, acks=0, sends=[[message(i) for i in range(5)]])
    deadline = time.monotonic() + 10
    while True:
        records = read_partition(broker.bootstrap, topic) if time.monotonic() < deadline else None
        if records is None or len(records) == 5:
            break
        time.sleep(0.2)
    assert records is not None, "acks=0 records never became readable"
    assert [r.value for r in records] == [message(i)["value"].encode() for i in range(5)]


def test_produce_to_several_partitions(broker, topic):
    assert kafkajs(broker, "create-topic", topic=topic, partitions=3) == {"created": True}
    sends = [[message(i, partition=i % 3) for i in range(12)]]
    out = kafkajs(broker, "produce", topic=topic, idempotent=True, acks=-1, sends=sends)
    assert sorted((r["partition"], r["errorCode"], int(r["baseOffset"])) for r in out["results"][0]) == [
        (0, 0, 0), (1, 0, 0), (2, 0, 0),
    ]
    for partition in range(3):
        records = read_partition(broker.bootstrap, topic, partition)
        assert [r.key for r in records] == [f"key-{i}".encode() for i in range(partition, 12, 3)]


def test_admin_create_metadata_offsets_delete(broker, topic):
    assert kafkajs(broker, "create-topic", topic=topic, partitions=3, configs={"retention.ms": "3600000"}) == {
        "created": True
    }
    # Creating it again reports "not created" rather than failing.
    assert kafkajs(broker, "create-topic", topic=topic, partitions=3) == {"created": False}
    assert topic in kafkajs(broker, "list-topics")["topics"]

    (meta,) = kafkajs(broker, "metadata", topic=topic)["topics"]
    assert meta["name"] == topic
    assert sorted(p["partitionId"] for p in meta["partitions"]) == [0, 1, 2]
    for p in meta["partitions"]:
        assert p["partitionErrorCode"] == 0
        assert p["leader"] >= 0 and p["replicas"] == [p["leader"]] and p["isr"] == [p["leader"]]

    kafkajs(broker, "produce", topic=topic, idempotent=True, acks=-1,
            sends=[[message(i, partition=1) for i in range(4)]])
    offsets = kafkajs(broker, "offsets", topic=topic)
    latest = {o["partition"]: (o["low"], o["high"], o["offset"]) for o in offsets["latest"]}
    assert latest == {0: ("0", "0", "0"), 1: ("0", "4", "4"), 2: ("0", "0", "0")}
    earliest = {o["partition"]: o["offset"] for o in offsets["earliest"]}
    assert earliest == {0: "0", 1: "0", 2: "0"}

    assert kafkajs(broker, "delete-topic", topic=topic) == {"deleted": True}
    deadline = time.monotonic() + 10
    while topic in kafkajs(broker, "list-topics")["topics"]:
        assert time.monotonic() < deadline, "deleted topic still listed after 10 s"
        time.sleep(0.5)


def test_offsets_by_timestamp(broker, topic):
    kafkajs(broker, "create-topic", topic=topic, partitions=1)
    kafkajs(broker, "produce", topic=topic, idempotent=True, acks=-1, sends=[[message(i) for i in range(3)]])
    time.sleep(0.05)
    boundary_ms = int(time.time() * 1000)
    time.sleep(0.05)
    kafkajs(broker, "produce", topic=topic, idempotent=True, acks=-1, sends=[[message(i) for i in range(3, 5)]])
    assert kafkajs(broker, "offsets-by-time", topic=topic, timestamp=boundary_ms) == [{"partition": 0, "offset": "3"}]


def test_admin_configs_and_partitions(broker, topic):
    kafkajs(broker, "create-topic", topic=topic, partitions=1, configs={"retention.ms": "3600000"})
    got = kafkajs(broker, "describe-configs", topic=topic, names=["retention.ms", "cleanup.policy"])
    assert got["configs"] == {"retention.ms": "3600000", "cleanup.policy": "delete"}

    assert kafkajs(broker, "alter-configs", topic=topic, configs={"retention.ms": "7200000"}) == {"errorCodes": [0]}
    got = kafkajs(broker, "describe-configs", topic=topic, names=["retention.ms"])
    assert got["configs"] == {"retention.ms": "7200000"}

    assert kafkajs(broker, "create-partitions", topic=topic, count=4) == {"created": True}
    (meta,) = kafkajs(broker, "metadata", topic=topic)["topics"]
    assert sorted(p["partitionId"] for p in meta["partitions"]) == [0, 1, 2, 3]
