"""Fixtures of the consumer-group tests: a broker with no initial rebalance delay, and helpers."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

FAST = ["--set", "group.initial.rebalance.delay.ms=0", "--set", "group.min.session.timeout.ms=1000"]


@pytest.fixture
def gbroker(broker_factory):
    """A broker of the test's own with group.initial.rebalance.delay.ms=0 (restartable)."""
    return broker_factory(FAST)


def create_topic(broker, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(30)


def produce(broker, topic: str, values: list[bytes], partitions: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i, value in enumerate(values):
        if partitions:
            producer.produce(topic, value, partition=i % partitions)
        else:
            producer.produce(topic, value)
    assert producer.flush(30) == 0


def group_consumer(broker, group: str, **extra) -> Consumer:
    """A librdkafka group consumer with manual commits, reading from the earliest offset; `extra` overrides."""
    config = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "enable.auto.commit": False,
    }
    config.update(extra)
    return Consumer(config)
