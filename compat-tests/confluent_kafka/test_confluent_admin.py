"""confluent-kafka AdminClient against odradek: topics, partitions,
configs, records and cluster description, with exact error codes."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from harness.readback import consumer, read_partition, watermarks

TIMEOUT_S = 15


@pytest.fixture
def admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create(admin: AdminClient, topic: str, partitions: int = 1, config: dict | None = None, validate_only=False):
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=TIMEOUT_S,
        validate_only=validate_only,
    )
    return futures[topic].result(timeout=TIMEOUT_S)


def error_code(future) -> int:
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=TIMEOUT_S)
    return raised.value.args[0].code()


def topic_configs(admin: AdminClient, topic: str) -> dict:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)


def partition_ids(admin: AdminClient, topic: str) -> list[int]:
    meta = admin.list_topics(topic=topic, timeout=TIMEOUT_S).topics[topic]
    assert meta.error is None, meta.error
    return sorted(meta.partitions)


def produce(broker, topic: str, count: int) -> None:
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "message.timeout.ms": 30000})
    for i in range(count):
        p.produce(topic, value=f"v{i}".encode(), partition=0)
    assert p.flush(30) == 0


def test_create_topic_with_partitions_and_configs(admin, topic):
    create(admin, topic, partitions=3, config={"retention.ms": "86400000", "max.message.bytes": "2000000"})
    assert partition_ids(admin, topic) == [0, 1, 2]

    configs = topic_configs(admin, topic)
    assert configs["retention.ms"].value == "86400000" and not configs["retention.ms"].is_default
    assert configs["max.message.bytes"].value == "2000000"
    assert configs["cleanup.policy"].value == "delete"
    dynamic = ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["retention.ms"].source in (dynamic, dynamic.value)


def test_create_existing_topic_fails_with_topic_already_exists(admin, topic):
    create(admin, topic)
    futures = admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=TIMEOUT_S)
    assert error_code(futures[topic]) == KafkaError.TOPIC_ALREADY_EXISTS


def test_create_topic_rejects_unknown_config_and_bad_partition_count(admin, topic):
    futures = admin.create_topics([NewTopic(topic, 1, 1, config={"no.such.config": "1"})], operation_timeout=TIMEOUT_S)
    assert error_code(futures[topic]) == KafkaError.INVALID_CONFIG
    futures = admin.create_topics([NewTopic(topic + "-zero", 0, 1)], operation_timeout=TIMEOUT_S)
    assert error_code(futures[topic + "-zero"]) == KafkaError.INVALID_PARTITIONS
    assert topic not in admin.list_topics(timeout=TIMEOUT_S).topics


def test_create_topic_validate_only_creates_nothing(admin, topic):
    create(admin, topic, partitions=2, validate_only=True)
    assert topic not in admin.list_topics(timeout=TIMEOUT_S).topics


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_alter_configs_replaces_the_whole_dynamic_set(admin, topic):
    create(admin, topic, config={"retention.ms": "86400000", "max.message.bytes": "2000000"})
    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "1000000"})
    admin.alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
    configs = topic_configs(admin, topic)
    assert configs["retention.ms"].value == "1000000"
    # AlterConfigs (non-incremental) resets every config it does not name.
    assert configs["max.message.bytes"].is_default
    assert configs["max.message.bytes"].value == "1048588"


def test_incremental_alter_configs_set_and_delete(admin, topic):
    create(admin, topic, config={"retention.ms": "86400000", "max.message.bytes": "2000000"})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "2000000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
    configs = topic_configs(admin, topic)
    assert configs["retention.ms"].value == "2000000"
    assert configs["max.message.bytes"].is_default and configs["max.message.bytes"].value == "1048588"


def test_describe_configs_of_missing_topic(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    assert error_code(admin.describe_configs([resource])[resource]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_partitions_grows_and_never_shrinks(broker, admin, topic):
    create(admin, topic, partitions=2)
    admin.create_partitions([NewPartitions(topic, 5)], operation_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    assert partition_ids(admin, topic) == [0, 1, 2, 3, 4]
    # The new partitions are usable.
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    p.produce(topic, value=b"in new partition", partition=4)
    assert p.flush(30) == 0
    assert [r.value for r in read_partition(broker.bootstrap, topic, 4)] == [b"in new partition"]

    shrink = admin.create_partitions([NewPartitions(topic, 3)], operation_timeout=TIMEOUT_S)
    assert error_code(shrink[topic]) == KafkaError.INVALID_PARTITIONS


def test_delete_topics(broker, admin, topic):
    create(admin, topic, partitions=2)
    produce(broker, topic, 3)
    admin.delete_topics([topic], operation_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    deadline = time.monotonic() + 10
    while topic in admin.list_topics(timeout=TIMEOUT_S).topics:
        assert time.monotonic() < deadline, "deleted topic still listed after 10 s"
        time.sleep(0.2)
    missing = admin.delete_topics([topic], operation_timeout=TIMEOUT_S)
    assert error_code(missing[topic]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_delete_topic_then_recreate_starts_empty(broker, admin, topic):
    create(admin, topic)
    produce(broker, topic, 5)
    admin.delete_topics([topic], operation_timeout=TIMEOUT_S)[topic].result(timeout=TIMEOUT_S)
    deadline = time.monotonic() + 10
    while True:
        try:
            create(admin, topic)
            break
        except KafkaException as e:
            # Deletion may still be in progress for a moment.
            assert time.monotonic() < deadline, f"could not re-create topic: {e}"
            time.sleep(0.2)
    assert watermarks(broker.bootstrap, topic) == (0, 0)


def test_list_topics_shows_broker_and_partitions(broker, admin, topic):
    create(admin, topic, partitions=2)
    meta = admin.list_topics(timeout=TIMEOUT_S)
    assert [(b.host, b.port) for b in meta.brokers.values()] == [(broker.host, broker.port)]
    (broker_id,) = meta.brokers
    partitions = meta.topics[topic].partitions
    assert sorted(partitions) == [0, 1]
    for p in partitions.values():
        assert (p.leader, p.replicas, p.isrs, p.error) == (broker_id, [broker_id], [broker_id], None)


def test_delete_records_moves_the_low_watermark(broker, admin, topic):
    create(admin, topic)
    produce(broker, topic, 10)
    futures = admin.delete_records([TopicPartition(topic, 0, 4)], operation_timeout=TIMEOUT_S)
    ((tp, future),) = futures.items()
    assert future.result(timeout=TIMEOUT_S).low_watermark == 4
    assert watermarks(broker.bootstrap, topic) == (4, 10)
    assert [r.value for r in read_partition(broker.bootstrap, topic, start_offset=4)] == [
        f"v{i}".encode() for i in range(4, 10)
    ]
    # Reading below the new log start offset is out of range.
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is not None, f"read offset {msg.offset()} below the log start offset"
            if msg.error().code() != KafkaError._PARTITION_EOF:
                assert msg.error().code() == KafkaError._AUTO_OFFSET_RESET, msg.error()
                break
        else:
            pytest.fail("no out-of-range error when fetching below the log start offset")
    finally:
        c.close()
    # -1 means "up to the high watermark".
    futures = admin.delete_records([TopicPartition(topic, 0, -1)], operation_timeout=TIMEOUT_S)
    assert next(iter(futures.values())).result(timeout=TIMEOUT_S).low_watermark == 10
    assert watermarks(broker.bootstrap, topic) == (10, 10)


def test_describe_cluster(broker, admin):
    cluster = admin.describe_cluster(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    assert cluster.cluster_id, "empty cluster id"
    assert [(n.host, n.port) for n in cluster.nodes] == [(broker.host, broker.port)]
    assert cluster.controller is not None and cluster.controller.id == cluster.nodes[0].id


def test_list_offsets_earliest_latest_timestamp_and_max_timestamp(broker, admin, topic):
    create(admin, topic)
    base_ms = int(time.time() * 1000) - 60_000
    # Timestamps out of order on purpose: the max timestamp is at offset 2, not at the end.
    timestamps = [base_ms, base_ms + 1000, base_ms + 5000, base_ms + 2000, base_ms + 3000]
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for i, ts in enumerate(timestamps):
        p.produce(topic, value=f"v{i}".encode(), partition=0, timestamp=ts)
    assert p.flush(30) == 0

    tp = TopicPartition(topic, 0)

    def lookup(spec: OffsetSpec) -> tuple[int, int]:
        result = admin.list_offsets({tp: spec}, request_timeout=TIMEOUT_S)[tp].result(timeout=TIMEOUT_S)
        return result.offset, result.timestamp

    assert lookup(OffsetSpec.earliest())[0] == 0
    assert lookup(OffsetSpec.latest())[0] == 5
    # First offset whose timestamp is >= the query.
    assert lookup(OffsetSpec.for_timestamp(base_ms + 1500)) == (2, base_ms + 5000)
    # KIP-734: the offset holding the largest timestamp.
    assert lookup(OffsetSpec.max_timestamp()) == (2, base_ms + 5000)
