"""confluent-kafka (librdkafka) producer and consumer against odradek.

Producer: acks=all, enable.idempotence=True, every compression.type,
delivery reports with offsets. Consumer: manual assign() at explicit
offsets, no commits (odradek has no group coordinator yet)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness.readback import consumer, read_partition

FLUSH_TIMEOUT_S = 30


def producer(broker, **overrides) -> Producer:
    config = {
        "bootstrap.servers": broker.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    config.update(overrides)
    return Producer(config)


def produce_all(p: Producer, topic: str, messages: list[dict]) -> list[tuple[int, int]]:
    """Produce and flush; returns (partition, offset) per message, in produce
    order, failing on any delivery error."""
    reports: list = [None] * len(messages)

    def on_delivery(index):
        def record(err, msg):
            reports[index] = (err, msg.partition(), msg.offset())
        return record

    for i, m in enumerate(messages):
        p.produce(topic, on_delivery=on_delivery(i), **m)
        p.poll(0)
    remaining = p.flush(FLUSH_TIMEOUT_S)
    assert remaining == 0, f"{remaining} messages still undelivered after {FLUSH_TIMEOUT_S}s"
    errors = [(i, r[0]) for i, r in enumerate(reports) if r[0] is not None]
    assert not errors, f"delivery errors: {errors[:5]}"
    return [(partition, offset) for _, partition, offset in reports]


def keyed(i: int, partition: int = 0) -> dict:
    return {
        "partition": partition,
        "key": f"key-{i}".encode(),
        "value": f"value-{i}|".encode() + b"lorem ipsum dolor " * 8,
        # Repeated header names are legal and must keep their order.
        "headers": [("seq", str(i).encode()), ("tag", b"a"), ("tag", b"b")],
    }


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_idempotent_produce_every_codec_then_consume(broker, topic, compression):
    count = 200
    messages = [keyed(i) for i in range(count)]
    positions = produce_all(producer(broker, **{"compression.type": compression}), topic, messages)
    assert positions == [(0, i) for i in range(count)]

    records = read_partition(broker.bootstrap, topic)
    assert [r.offset for r in records] == list(range(count))
    for m, r in zip(messages, records):
        assert (r.key, r.value, list(r.headers)) == (m["key"], m["value"], m["headers"])


def test_null_and_empty_keys_and_values(broker, topic):
    messages = [
        {"partition": 0, "key": None, "value": b"no key"},
        {"partition": 0, "key": b"tombstone", "value": None},
        {"partition": 0, "key": b"", "value": b""},
        {"partition": 0, "key": b"k", "value": b"v", "headers": [("null-header", None), ("empty", b"")]},
    ]
    produce_all(producer(broker), topic, messages)
    records = read_partition(broker.bootstrap, topic)
    assert [(r.key, r.value) for r in records] == [(None, b"no key"), (b"tombstone", None), (b"", b""), (b"k", b"v")]
    assert records[3].headers == (("null-header", None), ("empty", b""))


def test_large_record_round_trips(broker, topic):
    big = bytes(range(256)) * 3500  # ~896 KB, under the default max.message.bytes (1 MB)
    produce_all(producer(broker, **{"compression.type": "none"}), topic, [{"partition": 0, "value": big}])
    (record,) = read_partition(broker.bootstrap, topic)
    assert record.value == big


def test_assign_at_explicit_offsets(broker, topic):
    produce_all(producer(broker), topic, [keyed(i) for i in range(50)])
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 37)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 13 and time.monotonic() < deadline:
            for msg in c.consume(num_messages=100, timeout=0.5):
                if not msg.error():
                    got.append((msg.offset(), msg.key()))
        assert got == [(i, f"key-{i}".encode()) for i in range(37, 50)]

        # Seek back and read one record again.
        c.seek(TopicPartition(topic, 0, 3))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                assert (msg.offset(), msg.key()) == (3, b"key-3")
                break
        else:
            pytest.fail("no record after seek to offset 3")
    finally:
        c.close()


def test_assign_past_the_end_reports_out_of_range(broker, topic):
    produce_all(producer(broker), topic, [keyed(i) for i in range(5)])
    c = consumer(broker.bootstrap)  # auto.offset.reset=error
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() and msg.error().code() != KafkaError._PARTITION_EOF:
                assert msg.error().code() == KafkaError._AUTO_OFFSET_RESET, msg.error()
                assert "out of range" in msg.error().str().lower()
                return
        pytest.fail("no OFFSET_OUT_OF_RANGE reported for offset 1000 of a 5-record partition")
    finally:
        c.close()


def test_several_partitions_keep_per_partition_order(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=15)
    messages = [keyed(i, partition=i % 3) for i in range(60)]
    positions = produce_all(producer(broker), topic, messages)
    for partition in range(3):
        assert [o for p, o in positions if p == partition] == list(range(20))
        records = read_partition(broker.bootstrap, topic, partition)
        assert [r.key for r in records] == [f"key-{i}".encode() for i in range(partition, 60, 3)]


def test_watermarks_and_offsets_for_times(broker, topic):
    base_ms = int(time.time() * 1000) - 60_000
    # Explicit CreateTime timestamps one second apart.
    messages = [{"partition": 0, "value": f"v{i}".encode(), "timestamp": base_ms + 1000 * i} for i in range(10)]
    produce_all(producer(broker), topic, messages)
    records = read_partition(broker.bootstrap, topic)
    assert [r.timestamp_ms for r in records] == [base_ms + 1000 * i for i in range(10)]

    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 10)
        query = [TopicPartition(topic, 0, ts) for ts in (base_ms - 5000, base_ms + 4500, base_ms + 9000, base_ms + 20_000)]
        answers = []
        for tp in query:
            (result,) = c.offsets_for_times([tp], timeout=10)
            assert result.error is None
            answers.append(result.offset)
        # Earliest offset whose timestamp >= the query; none -> -1 (end).
        assert answers == [0, 5, 9, -1]
    finally:
        c.close()


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_non_idempotent_acks_levels(broker, topic, acks):
    p = producer(broker, **{"enable.idempotence": False, "acks": acks})
    positions = produce_all(p, topic, [keyed(i) for i in range(30)])
    if acks != "0":
        assert positions == [(0, i) for i in range(30)]
    deadline = time.monotonic() + 10
    while len(records := read_partition(broker.bootstrap, topic)) < 30 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [r.key for r in records] == [f"key-{i}".encode() for i in range(30)]


def _first_record_after(c, deadline_s: float):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        msg = c.poll(0.05)
        if msg is not None and not msg.error():
            return msg
    return None


def test_fetch_long_polls_and_wakes_on_new_data(broker, topic):
    """An empty fetch waits on the broker (no busy loop) and is answered as
    soon as data arrives, not when fetch.wait.max.ms runs out."""
    produce_all(producer(broker), topic, [keyed(0)])
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 3000, "enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, 1)])  # at the end: nothing to read yet
        time.sleep(1.0)  # let the consumer settle into waiting fetches
        cpu_before = _process_cpu_s(broker.pid)
        assert _first_record_after(c, 3.0) is None
        idle_cpu_s = _process_cpu_s(broker.pid) - cpu_before
        assert idle_cpu_s < 0.3, f"broker used {idle_cpu_s:.2f} s CPU in 3 s serving one idle consumer"

        p = producer(broker)
        sent_at = time.monotonic()
        produce_all(p, topic, [keyed(1)])
        msg = _first_record_after(c, 10.0)
        assert msg is not None and msg.key() == b"key-1"
        waited_s = time.monotonic() - sent_at
        assert waited_s < 1.5, f"record arrived {waited_s:.2f} s after it was produced (fetch.wait.max.ms=3000)"
    finally:
        c.close()


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_fetch_returns_a_batch_larger_than_the_fetch_limits(broker, topic):
    """KIP-74: the first batch is returned even if it exceeds
    max.partition.fetch.bytes / fetch.max.bytes, so consumers make progress."""
    values = [bytes([65 + i]) * 50_000 for i in range(3)]
    produce_all(producer(broker, **{"linger.ms": 0}), topic, [{"partition": 0, "value": v} for v in values])
    # librdkafka's smallest settings (it wants fetch.max.bytes >= message.max.bytes >= 1000).
    limits = {"fetch.max.bytes": 1000, "max.partition.fetch.bytes": 1000, "message.max.bytes": 1000}
    c = consumer(broker.bootstrap, **limits, **{"enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got.append(msg.value())
        assert got == values
    finally:
        c.close()


def test_log_append_time_topic_overrides_producer_timestamps(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics(
        [NewTopic(topic, 1, 1, config={"message.timestamp.type": "LogAppendTime"})]
    )[topic].result(timeout=15)
    stale_ms = int(time.time() * 1000) - 3_600_000
    before_ms = int(time.time() * 1000)
    produce_all(producer(broker), topic, [{"partition": 0, "value": b"v", "timestamp": stale_ms}])
    after_ms = int(time.time() * 1000)

    c = consumer(broker.bootstrap, **{"enable.partition.eof": False})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        msg = _first_record_after(c, 20.0)
    finally:
        c.close()
    assert msg is not None
    ts_type, ts = msg.timestamp()
    assert ts_type == TIMESTAMP_LOG_APPEND_TIME, f"timestamp type {ts_type} (create time is {TIMESTAMP_CREATE_TIME})"
    assert before_ms - 1000 <= ts <= after_ms + 1000, (before_ms, ts, after_ms)


def test_concurrent_idempotent_producers_share_a_partition(broker, topic):
    """Four producers (four connections) append to one partition at once:
    nothing is lost or duplicated, and each producer's records keep their order."""
    producers, per_producer = 4, 500
    outcomes: dict[int, list] = {}

    def run(pid: int) -> None:
        messages = [{"partition": 0, "key": f"p{pid}".encode(), "value": f"{pid}:{i}".encode()}
                    for i in range(per_producer)]
        outcomes[pid] = produce_all(producer(broker, **{"linger.ms": 1}), topic, messages)

    threads = [threading.Thread(target=run, args=(pid,)) for pid in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == list(range(producers)), "a producer thread failed"

    records = read_partition(broker.bootstrap, topic)
    assert [r.offset for r in records] == list(range(producers * per_producer))
    for pid in range(producers):
        mine = [r for r in records if r.key == f"p{pid}".encode()]
        assert [r.value for r in mine] == [f"{pid}:{i}".encode() for i in range(per_producer)]
        # The offsets in the delivery reports are where the records really are.
        assert [r.offset for r in mine] == [offset for _, offset in outcomes[pid]]
