"""Helpers of the cluster tests: topics, a background producer that records
every acknowledgement with its time, and read-back checks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from harness.cluster import Cluster
from harness.readback import read_partition


def create_topic(cluster: Cluster, name: str, partitions: int, rf: int = 3, config: dict | None = None) -> None:
    """CreateTopics through AdminClient, then wait until every node's
    Metadata shows every partition with a leader and a full ISR."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=rf, config=dict(config or {}))]
    )
    futures[name].result(30)
    for n in cluster.alive():
        cluster.wait_isr(name, rf, timeout_s=30.0, node=n)


def producer_config(bootstrap: str, **overrides) -> dict:
    config = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        "message.timeout.ms": 30000,
        "request.timeout.ms": 5000,
        "retry.backoff.ms": 50,
        "retry.backoff.max.ms": 500,
        "reconnect.backoff.ms": 20,
        "reconnect.backoff.max.ms": 500,
        "socket.connection.setup.timeout.ms": 3000,
    }
    config.update(overrides)
    return config


@dataclass
class Deliveries:
    acked: dict = field(default_factory=dict)  # seq -> (partition, offset, t_ack)
    failed: dict = field(default_factory=dict)  # seq -> (KafkaError, t)

    def callback(self, seq: int):
        def on_delivery(err, msg):
            now = time.monotonic()
            if err is None:
                self.acked[seq] = (msg.partition(), msg.offset(), now)
            else:
                self.failed[seq] = (err, now)

        return on_delivery

    def ack_times(self) -> list[float]:
        return sorted(t for _, _, t in self.acked.values())

    def first_ack_after(self, t: float) -> float | None:
        later = [x for x in self.ack_times() if x > t]
        return later[0] if later else None

    def longest_gap(self, start: float, end: float) -> tuple[float, float]:
        """(seconds, at) of the longest stretch within [start, end] without an ack."""
        points = [start] + [t for t in self.ack_times() if start < t < end] + [end]
        return max(((b - a, a) for a, b in zip(points, points[1:])), default=(0.0, start))


def value_of(seq: int) -> bytes:
    return f"rec-{seq:08d}".encode()


def produce_all(bootstrap: str, topic: str, count: int, partitions: int, start_seq: int = 0, **conf) -> Deliveries:
    """Produce `count` records round robin over the partitions and flush."""
    producer = Producer(producer_config(bootstrap, **conf))
    d = Deliveries()
    for seq in range(start_seq, start_seq + count):
        while True:
            try:
                producer.produce(topic, value=value_of(seq), partition=seq % partitions, on_delivery=d.callback(seq))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0, "records neither acknowledged nor failed after 60 s"
    return d


class BackgroundProducer(threading.Thread):
    """Produces to one partition at a steady rate until stop(); records every
    delivery report with its time (poll every few milliseconds)."""

    def __init__(self, bootstrap: str, topic: str, partition: int = 0, rate: float = 200.0, **conf):
        super().__init__(daemon=True)
        self.producer = Producer(producer_config(bootstrap, **conf))
        self.topic = topic
        self.partition = partition
        self.interval = 1.0 / rate
        self.deliveries = Deliveries()
        self.produced = 0
        self._stop_event = threading.Event()
        self.remaining = None

    def run(self) -> None:
        seq = 0
        next_t = time.monotonic()
        while not self._stop_event.is_set():
            try:
                self.producer.produce(
                    self.topic, value=value_of(seq), partition=self.partition, on_delivery=self.deliveries.callback(seq)
                )
                seq += 1
                self.produced = seq
            except BufferError:
                pass
            next_t += self.interval
            while (left := next_t - time.monotonic()) > 0:  # poll() returns early when it serves a callback
                self.producer.poll(left)
            self.producer.poll(0)
            if time.monotonic() - next_t > 1.0:
                next_t = time.monotonic()
        self.remaining = self.producer.flush(60)

    def stop(self) -> Deliveries:
        self._stop_event.set()
        self.join(90)
        assert not self.is_alive(), "background producer did not finish flushing"
        assert self.remaining == 0, f"{self.remaining} records neither acknowledged nor failed"
        return self.deliveries


def assert_acked_records_stored(cluster: Cluster, topic: str, d: Deliveries, partitions: list[int]) -> dict:
    """Every acknowledged record is at its acknowledged offset and no value
    is stored twice. Returns {partition: [values in log order]}."""
    logs = {p: read_partition(cluster.bootstrap, topic, p, timeout_s=60.0) for p in partitions}
    at = {(p, r.offset): r.value for p, recs in logs.items() for r in recs}
    lost = [
        (seq, p, off, at.get((p, off)))
        for seq, (p, off, _) in sorted(d.acked.items())
        if at.get((p, off)) != value_of(seq)
    ]
    assert not lost, f"{len(lost)} acknowledged records are not at their offsets, e.g. (seq, partition, offset, found) {lost[:5]}"
    values = [r.value for recs in logs.values() for r in recs]
    dups = len(values) - len(set(values))
    assert dups == 0, f"{dups} values are stored more than once"
    return {p: [r.value for r in recs] for p, recs in logs.items()}


def error_name(err: KafkaError) -> str:
    return err.name()
