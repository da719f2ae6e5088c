"""kcat (Debian 12's kcat 1.7.1 with librdkafka 2.0.2) against odradek.

Produces with keys (-K:) and headers (-H) in every codec and every acks
setting, and reads back by absolute, relative and timestamp offsets,
checking offsets, keys, headers and payloads."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

KCAT_TIMEOUT_S = 60
# Bounded retries: a delivery that cannot succeed fails the test instead of hanging it.
PRODUCER_LIMITS = ["-X", "message.timeout.ms=20000"]


def kcat(broker, *args: str, input: str | None = None) -> str:
    cmd = ["kcat", "-b", broker.bootstrap, "-m", "15", *args]
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=KCAT_TIMEOUT_S)
    # kcat exits 0 even after some delivery failures, so its stderr is checked too.
    if proc.returncode != 0 or "% ERROR" in proc.stderr or "Delivery failed" in proc.stderr:
        pytest.fail(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return proc.stdout


def produce_lines(broker, topic: str, lines: list[str], *options: str) -> None:
    kcat(broker, "-P", "-t", topic, "-p", "0", "-K:", *PRODUCER_LIMITS, *options, input="".join(l + "\n" for l in lines))


def consume_json(broker, topic: str, *options: str) -> list[dict]:
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-e", "-J", *options)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def payload(i: int) -> str:
    # Repetitive enough that every codec really compresses it.
    return f"value-{i}|" + "the quick brown fox " * 10


def test_metadata_lists_broker_topic_and_partitions(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=15)

    meta = json.loads(kcat(broker, "-L", "-J", "-t", topic))
    assert [b["name"] for b in meta["brokers"]] == [broker.bootstrap]
    broker_id = meta["brokers"][0]["id"]
    (listed,) = meta["topics"]
    assert listed["topic"] == topic and "error" not in listed
    assert sorted(p["partition"] for p in listed["partitions"]) == [0, 1, 2]
    for p in listed["partitions"]:
        assert p["leader"] == broker_id
        assert [r["id"] for r in p["replicas"]] == [broker_id]
        assert [r["id"] for r in p["isrs"]] == [broker_id]

    text = kcat(broker, "-L")
    assert f"broker {broker_id} at {broker.bootstrap}" in text
    assert f'topic "{topic}" with 3 partitions:' in text


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_keys_headers_in_every_codec(broker, topic, codec):
    count = 50
    produce_lines(
        broker, topic, [f"key-{i}:{payload(i)}" for i in range(count)],
        "-z", codec, "-H", "trace=abc123", "-H", "codec=" + codec, "-X", "acks=-1",
    )
    records = consume_json(broker, topic, "-o", "beginning")
    assert [r["offset"] for r in records] == list(range(count))
    assert [r["key"] for r in records] == [f"key-{i}" for i in range(count)]
    assert [r["payload"] for r in records] == [payload(i) for i in range(count)]
    assert all(r["headers"] == ["trace", "abc123", "codec", codec] for r in records)
    # CreateTime stamped by the producer, close to now.
    now_ms = time.time() * 1000
    assert all(r["tstype"] == "create" and abs(r["ts"] - now_ms) < 120_000 for r in records)


def test_consume_from_absolute_and_relative_offsets(broker, topic):
    produce_lines(broker, topic, [f"k{i}:v{i}" for i in range(10)], "-H", "h=1")
    fmt = "%o|%k|%h|%s\\n"  # offset | key | headers | payload

    def read(offset: str) -> list[str]:
        return kcat(broker, "-C", "-t", topic, "-p", "0", "-e", "-o", offset, "-f", fmt).splitlines()

    assert read("beginning") == [f"{i}|k{i}|h=1|v{i}" for i in range(10)]
    assert read("4") == [f"{i}|k{i}|h=1|v{i}" for i in range(4, 10)]
    assert read("-3") == [f"{i}|k{i}|h=1|v{i}" for i in range(7, 10)]
    # -c bounds the count from the start offset.
    assert kcat(broker, "-C", "-t", topic, "-p", "0", "-e", "-o", "2", "-c", "2", "-f", fmt).splitlines() == [
        "2|k2|h=1|v2", "3|k3|h=1|v3",
    ]


def test_consume_from_timestamp(broker, topic):
    produce_lines(broker, topic, [f"early-{i}:e{i}" for i in range(3)])
    time.sleep(0.05)
    boundary_ms = int(time.time() * 1000)
    time.sleep(0.05)
    produce_lines(broker, topic, [f"late-{i}:l{i}" for i in range(3)])

    records = consume_json(broker, topic, "-o", f"s@{boundary_ms}")
    assert [(r["offset"], r["key"]) for r in records] == [(3, "late-0"), (4, "late-1"), (5, "late-2")]
    # Query mode: ListOffsets by timestamp.
    answer = kcat(broker, "-Q", "-t", f"{topic}:0:{boundary_ms}")
    assert re.search(rf"\[?0\]?.*\boffset\s+3\b", answer), answer


@pytest.mark.parametrize("acks", ["0", "1", "-1"])
def test_produce_with_acks(broker, topic, acks):
    produce_lines(broker, topic, [f"k{i}:acks{acks}-{i}" for i in range(20)], "-X", f"acks={acks}")
    deadline = time.monotonic() + 10
    # acks=0 gets no answer, so the last records may land a moment after kcat exits.
    while len(records := consume_json(broker, topic, "-o", "beginning")) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [(r["offset"], r["key"], r["payload"]) for r in records] == [
        (i, f"k{i}", f"acks{acks}-{i}") for i in range(20)
    ]


def test_idempotent_producer_of_librdkafka_2_0(broker, topic):
    """librdkafka 2.0.2's idempotent producer (older InitProducerId/Produce versions)."""
    produce_lines(broker, topic, [f"k{i}:idem-{i}" for i in range(100)], "-X", "enable.idempotence=true")
    records = consume_json(broker, topic, "-o", "beginning")
    assert [(r["offset"], r["key"], r["payload"]) for r in records] == [(i, f"k{i}", f"idem-{i}") for i in range(100)]
