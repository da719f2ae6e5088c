"""Durability across broker restarts (SIGTERM and kill -9) with a producer
that keeps producing through them.

The invariant: every acknowledged record (acks=all) is read back at the
offset its acknowledgement named, acknowledged records keep their produce
order, and with an idempotent producer the log holds no duplicates at all.
Runs with --dev (no fsync): a killed process's writes are still in the page
cache, so kill -9 must lose nothing acknowledged either."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from harness.readback import read_partition

RECORDS = 3000
PRODUCE_SPREAD_S = 3.0  # produce over this long, so records are in flight at each restart


@dataclass
class DeliveryLog:
    acked: dict[int, int] = field(default_factory=dict)  # sequence number -> offset
    failed: dict[int, str] = field(default_factory=dict)  # sequence number -> error

    def callback(self, seq: int):
        def on_delivery(err, msg):
            if err is None:
                self.acked[seq] = msg.offset()
            else:
                self.failed[seq] = str(err)
        return on_delivery


def restart(broker, kind: str) -> None:
    if kind == "kill9":
        broker.restart(hard=True)
    else:
        broker.restart(hard=False)


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "plain"])
@pytest.mark.parametrize("kind", ["sigterm", "kill9"])
def test_acknowledged_records_survive_restarts(fresh_broker, topic, kind, idempotent):
    producer = Producer(
        {
            "bootstrap.servers": fresh_broker.bootstrap,
            "acks": "all",
            "enable.idempotence": idempotent,
            "linger.ms": 2,
            "message.timeout.ms": 60000,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 500,
        }
    )
    deliveries = DeliveryLog()
    restart_at = {RECORDS // 3, 2 * RECORDS // 3}
    pause_s = PRODUCE_SPREAD_S / RECORDS
    for seq in range(RECORDS):
        if seq in restart_at:
            restart(fresh_broker, kind)
        producer.produce(topic, value=f"{seq:08d}".encode(), partition=0, on_delivery=deliveries.callback(seq))
        producer.poll(0)
        time.sleep(pause_s)
    remaining = producer.flush(90)
    assert remaining == 0, f"{remaining} records neither acknowledged nor failed after 90 s"

    log = [int(r.value) for r in read_partition(fresh_broker.bootstrap, topic)]
    offset_of = {offset: seq for offset, seq in enumerate(log)}  # offsets start at 0, no deletions here

    lost = sorted(seq for seq, offset in deliveries.acked.items() if offset_of.get(offset) != seq)
    assert not lost, (
        f"{len(lost)} acknowledged records are not at their acknowledged offset, e.g. "
        f"{[(s, deliveries.acked[s], offset_of.get(deliveries.acked[s])) for s in lost[:5]]}"
    )
    acked_in_log_order = [seq for seq in log if seq in deliveries.acked]
    first_occurrences = list(dict.fromkeys(acked_in_log_order))
    assert first_occurrences == sorted(first_occurrences), "acknowledged records out of produce order"
    if idempotent:
        duplicates = len(log) - len(set(log))
        assert duplicates == 0, f"{duplicates} duplicate records despite enable.idempotence=True"
        assert not deliveries.failed, f"idempotent deliveries failed: {list(deliveries.failed.items())[:5]}"
        assert log == list(range(RECORDS))


def test_sigterm_exits_cleanly(fresh_broker):
    assert fresh_broker.stop() == 0, fresh_broker.describe_failure()


def test_topics_and_configs_survive_restart(fresh_broker, topic):
    admin = AdminClient({"bootstrap.servers": fresh_broker.bootstrap})
    admin.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1, config={"retention.ms": "123456789"})]
    )[topic].result(timeout=15)
    producer = Producer({"bootstrap.servers": fresh_broker.bootstrap, "enable.idempotence": True})
    for partition in range(3):
        producer.produce(topic, value=f"p{partition}".encode(), partition=partition)
    assert producer.flush(30) == 0

    for kind in ("sigterm", "kill9"):
        restart(fresh_broker, kind)
        admin = AdminClient({"bootstrap.servers": fresh_broker.bootstrap})
        meta = admin.list_topics(topic=topic, timeout=15).topics[topic]
        assert meta.error is None and sorted(meta.partitions) == [0, 1, 2], f"after {kind}: {meta}"
        resource = ConfigResource(ResourceType.TOPIC, topic)
        configs = admin.describe_configs([resource])[resource].result(timeout=15)
        assert configs["retention.ms"].value == "123456789", f"after {kind}"
        for partition in range(3):
            assert [r.value for r in read_partition(fresh_broker.bootstrap, topic, partition)] == [
                f"p{partition}".encode()
            ], f"after {kind}"


def test_idempotent_producer_state_survives_restart(fresh_broker, topic):
    """The same producer (same producer id and epoch) keeps its sequence
    numbers across a restart: the rebuilt producer state must accept the next
    sequence rather than answer OUT_OF_ORDER_SEQUENCE or UNKNOWN_PRODUCER_ID."""
    producer = Producer(
        {"bootstrap.servers": fresh_broker.bootstrap, "enable.idempotence": True, "message.timeout.ms": 30000}
    )
    errors = []
    for i in range(50):
        producer.produce(topic, value=b"a%d" % i, partition=0, on_delivery=lambda e, m: e and errors.append(e))
    assert producer.flush(30) == 0
    fresh_broker.restart(hard=True)
    for i in range(50):
        producer.produce(topic, value=b"b%d" % i, partition=0, on_delivery=lambda e, m: e and errors.append(e))
    assert producer.flush(60) == 0
    assert not errors, errors[:5]
    values = [r.value for r in read_partition(fresh_broker.bootstrap, topic)]
    assert values == [b"a%d" % i for i in range(50)] + [b"b%d" % i for i in range(50)]
