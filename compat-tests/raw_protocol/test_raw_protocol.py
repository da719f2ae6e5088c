"""Protocol semantics checked with exact bytes and exact error codes over a
raw socket (harness/wire.py), where client libraries would hide them behind
retries: response ordering, acks=0, idempotent sequence checks,
min.insync.replicas, size limits, unknown partitions."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from harness import wire
from harness.readback import read_partition, watermarks
from harness.wire import Connection, Record

TIMEOUT_S = 15


def connect(broker) -> Connection:
    return Connection(broker.host, broker.port, timeout_s=TIMEOUT_S)


def create_topic(broker, topic: str, config: dict | None = None, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})])[topic].result(timeout=TIMEOUT_S)


def records(prefix: str, count: int) -> list[Record]:
    return [Record(f"{prefix}-{i}".encode(), f"k{i}".encode()) for i in range(count)]


def test_pipelined_requests_are_answered_in_order(broker, topic):
    """Kafka answers the requests of one connection in the order they were sent."""
    with connect(broker) as conn:
        conn.wait_topic_ready(topic)
        requests = []
        for cid in range(100, 130):
            if cid % 3:
                requests.append(wire.api_versions_request_v0(cid))
            else:
                requests.append(wire.metadata_request_v4(cid, [topic], allow_auto_create=False))
        conn.send(b"".join(requests))  # all at once, before reading anything
        answered = [wire.Reader(conn.recv_frame()).int32() for _ in requests]
        assert answered == list(range(100, 130))


def test_acks_zero_produce_gets_no_response_but_is_appended(broker, topic):
    with connect(broker) as conn:
        version = conn.produce_version()
        conn.wait_topic_ready(topic)
        fire_and_forget = conn.next_correlation_id()
        conn.send(wire.produce_request(fire_and_forget, version, topic, 0, wire.record_batch(records("a", 2)), acks=0))
        # The next answer on the connection belongs to the next request.
        answer = conn.api_versions()
        assert answer.error_code == wire.NONE
        (acked,) = conn.produce(version, topic, 0, wire.record_batch(records("b", 1)), acks=-1)
        assert (acked.error_code, acked.base_offset) == (wire.NONE, 2)
    assert [r.value for r in read_partition(broker.bootstrap, topic)] == [b"a-0", b"a-1", b"b-0"]


def test_idempotent_sequences(broker, topic):
    with connect(broker) as conn:
        version = conn.produce_version()
        conn.wait_topic_ready(topic)
        identity = conn.init_producer_id()
        assert identity.error_code == wire.NONE and identity.producer_id >= 0 and identity.producer_epoch >= 0
        pid, epoch = identity.producer_id, identity.producer_epoch

        def send(prefix: str, count: int, base_sequence: int):
            batch = wire.record_batch(records(prefix, count), producer_id=pid, producer_epoch=epoch,
                                      base_sequence=base_sequence)
            (answer,) = conn.produce(version, topic, 0, batch)
            return answer.error_code, answer.base_offset

        assert send("first", 3, 0) == (wire.NONE, 0)
        # A retried batch (same producer, epoch and sequence) is acknowledged
        # again with its original offset, and not appended twice.
        assert send("first", 3, 0) == (wire.NONE, 0)
        assert send("second", 2, 3) == (wire.NONE, 3)
        # A gap in the sequence is refused.
        error_code, _ = send("gap", 1, 9)
        assert error_code == wire.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert [r.value for r in read_partition(broker.bootstrap, topic)] == [
        b"first-0", b"first-1", b"first-2", b"second-0", b"second-1",
    ]


def test_min_insync_replicas_above_the_replica_count(broker, topic):
    create_topic(broker, topic, {"min.insync.replicas": "2"})
    with connect(broker) as conn:
        version = conn.produce_version()
        conn.wait_topic_ready(topic)
        (refused,) = conn.produce(version, topic, 0, wire.record_batch(records("all", 1)), acks=-1)
        assert refused.error_code == wire.NOT_ENOUGH_REPLICAS
        # min.insync.replicas only applies to acks=all.
        (accepted,) = conn.produce(version, topic, 0, wire.record_batch(records("one", 1)), acks=1)
        assert (accepted.error_code, accepted.base_offset) == (wire.NONE, 0)
    assert watermarks(broker.bootstrap, topic) == (0, 1)


@pytest.mark.parametrize("max_message_bytes", [None, 2_000_000], ids=["default", "raised"])
def test_batch_size_limit_is_max_message_bytes(broker, topic, max_message_bytes):
    create_topic(broker, topic, {"max.message.bytes": str(max_message_bytes)} if max_message_bytes else {})
    big = wire.record_batch([Record(b"x" * 1_200_000)])  # over the 1048588 default, under 2000000
    with connect(broker) as conn:
        version = conn.produce_version()
        conn.wait_topic_ready(topic)
        (answer,) = conn.produce(version, topic, 0, big)
    if max_message_bytes is None:
        assert answer.error_code == wire.MESSAGE_TOO_LARGE
        assert watermarks(broker.bootstrap, topic) == (0, 0)
    else:
        assert (answer.error_code, answer.base_offset) == (wire.NONE, 0)
        (record,) = read_partition(broker.bootstrap, topic)
        assert len(record.value) == 1_200_000


def test_produce_to_unknown_partition(broker, topic):
    with connect(broker) as conn:
        version = conn.produce_version()
        conn.wait_topic_ready(topic)
        (answer,) = conn.produce(version, topic, 7, wire.record_batch(records("x", 1)))
        assert (answer.index, answer.error_code) == (7, wire.UNKNOWN_TOPIC_OR_PARTITION)
