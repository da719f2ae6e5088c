"""Log recovery after a crash (kill -9) that left a damaged segment tail:
garbage after the last batch, a last batch cut short, a last batch whose
CRC no longer matches. The broker must start, serve every intact batch,
drop the damaged tail, and continue at the right offset.

The damage is done by hand to the partition's active segment file
(<data-dir>/<topic>-<partition>/<base offset>.log, as in DESIGN.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from confluent_kafka import Producer

from harness.readback import read_partition, watermarks

RECORDS = 5


def produce_one_batch_per_record(broker, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "enable.idempotence": False, "acks": "all"})
    for value in values:
        producer.produce(topic, value, partition=0)
        assert producer.flush(30) == 0  # one request, one batch per record


def active_segment(broker, topic: str) -> Path:
    partition_dir = broker.data_dir / f"{topic}-0"
    segments = sorted(partition_dir.glob("*.log"))
    assert segments, f"no segment files in {partition_dir}: {sorted(p.name for p in partition_dir.parent.rglob('*'))}"
    return segments[-1]


def crash_and_damage(broker, topic: str, damage) -> None:
    broker.kill9()
    damage(active_segment(broker, topic))
    broker.start()


def append_garbage(segment: Path) -> None:
    with open(segment, "ab") as f:
        f.write(os.urandom(37))


def cut_last_batch(segment: Path) -> None:
    os.truncate(segment, segment.stat().st_size - 7)


def flip_byte_in_last_batch(segment: Path) -> None:
    with open(segment, "r+b") as f:
        f.seek(-3, os.SEEK_END)  # inside the last record's value
        byte = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize(
    "damage, intact",
    [(append_garbage, RECORDS), (cut_last_batch, RECORDS - 1), (flip_byte_in_last_batch, RECORDS - 1)],
    ids=["garbage-after-last-batch", "last-batch-cut-short", "last-batch-crc-mismatch"],
)
def test_recovery_truncates_a_damaged_tail(fresh_broker, topic, damage, intact):
    values = [f"record-{i}".encode() for i in range(RECORDS)]
    produce_one_batch_per_record(fresh_broker, topic, values)

    crash_and_damage(fresh_broker, topic, damage)

    assert watermarks(fresh_broker.bootstrap, topic) == (0, intact)
    assert [r.value for r in read_partition(fresh_broker.bootstrap, topic)] == values[:intact]
    # Appends continue right after the last intact batch.
    produce_one_batch_per_record(fresh_broker, topic, [b"after-recovery"])
    records = read_partition(fresh_broker.bootstrap, topic)
    assert [(r.offset, r.value) for r in records] == list(enumerate(values[:intact] + [b"after-recovery"]))
