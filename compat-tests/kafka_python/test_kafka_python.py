"""kafka-python 2.3.3 against odradek: idempotent KafkaProducer,
KafkaConsumer with assign/seek (no group), KafkaAdminClient.

kafka-python 2.x producers are not idempotent by default (3.x made that the
default), so enable_idempotence=True is set explicitly."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError

from harness.readback import read_partition

TIMEOUT_S = 30


def producer(broker, **overrides) -> KafkaProducer:
    config = dict(
        bootstrap_servers=broker.bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=15000,
        delivery_timeout_ms=30000,
    )
    config.update(overrides)
    return KafkaProducer(**config)


def consumer(broker) -> KafkaConsumer:
    # group_id=None: no coordinator is used; offsets come from assign/seek.
    return KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False, request_timeout_ms=30000
    )


def poll_records(c: KafkaConsumer, tp: TopicPartition, count: int) -> list:
    out = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(out) < count and time.monotonic() < deadline:
        out += c.poll(timeout_ms=500).get(tp, [])
    return out


def send_all(p: KafkaProducer, topic: str, count: int, partition: int = 0) -> list[int]:
    futures = [
        p.send(
            topic,
            key=f"key-{i}".encode(),
            value=f"value-{i}|".encode() + b"abcdefgh" * 20,
            headers=[("seq", str(i).encode()), ("client", b"kafka-python")],
            partition=partition,
        )
        for i in range(count)
    ]
    p.flush(timeout=TIMEOUT_S)
    return [f.get(timeout=TIMEOUT_S).offset for f in futures]


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_idempotent_producer_then_assign_and_read(broker, topic, compression):
    p = producer(broker, compression_type=compression)
    try:
        assert send_all(p, topic, 100) == list(range(100))
    finally:
        p.close(timeout=10)

    tp = TopicPartition(topic, 0)
    c = consumer(broker)
    try:
        c.assign([tp])
        c.seek(tp, 0)
        records = poll_records(c, tp, 100)
    finally:
        c.close()
    assert [r.offset for r in records] == list(range(100))
    for i, r in enumerate(records):
        assert r.key == f"key-{i}".encode()
        assert r.value == f"value-{i}|".encode() + b"abcdefgh" * 20
        assert list(r.headers) == [("seq", str(i).encode()), ("client", b"kafka-python")]
    # And librdkafka reads the same bytes.
    assert [r.key for r in read_partition(broker.bootstrap, topic)] == [f"key-{i}".encode() for i in range(100)]


def test_seek_positions_and_offset_lookups(broker, topic):
    p = producer(broker)
    try:
        send_all(p, topic, 10)
    finally:
        p.close(timeout=10)
    tp = TopicPartition(topic, 0)
    c = consumer(broker)
    try:
        c.assign([tp])
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 10}

        c.seek(tp, 7)
        assert [r.offset for r in poll_records(c, tp, 3)] == [7, 8, 9]
        assert c.position(tp) == 10

        c.seek_to_beginning(tp)
        assert c.position(tp) == 0
        c.seek_to_end(tp)
        assert c.position(tp) == 10

        found = c.offsets_for_times({tp: 0})[tp]
        assert found.offset == 0
        assert c.offsets_for_times({tp: int(time.time() * 1000) + 3_600_000})[tp] is None
    finally:
        c.close()


@pytest.fixture
def admin(broker):
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    yield client
    client.close()


def test_admin_create_describe_and_delete_topics(broker, admin, topic):
    admin.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1, topic_configs={"retention.ms": "86400000"})],
        timeout_ms=15000,
    )
    assert topic in admin.list_topics()
    (described,) = admin.describe_topics([topic])
    assert described["error_code"] == 0
    assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2]

    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], timeout_ms=15000)

    (config_response,) = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    ((error_code, _msg, _type, _name, entries),) = config_response.resources
    assert error_code == 0
    values = {entry[0]: entry[1] for entry in entries}
    assert values["retention.ms"] == "86400000"

    admin.create_partitions({topic: NewPartitions(total_count=5)}, timeout_ms=15000)
    (described,) = admin.describe_topics([topic])
    assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2, 3, 4]

    admin.delete_topics([topic], timeout_ms=15000)
    deadline = time.monotonic() + 10
    while topic in admin.list_topics():
        assert time.monotonic() < deadline, "deleted topic still listed after 10 s"
        time.sleep(0.2)


def test_admin_delete_records(broker, admin, topic):
    p = producer(broker)
    try:
        send_all(p, topic, 10)
    finally:
        p.close(timeout=10)
    tp = TopicPartition(topic, 0)
    result = admin.delete_records({tp: 6}, timeout_ms=15000)
    assert result[tp]["low_watermark"] == 6
    c = consumer(broker)
    try:
        assert c.beginning_offsets([tp]) == {tp: 6}
    finally:
        c.close()
