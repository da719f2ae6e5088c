"""Helpers of the transaction tests (confluent-kafka / librdkafka 2.16).

Records are written with their (partition, offset) taken from the delivery
reports, so that what a read_committed or read_uncommitted consumer must
return is known exactly: transactional records get delivery reports (with
offsets) as soon as the partition leader has them, long before the commit or
abort, and aborted records keep their offsets in the log.

Note: librdkafka's default isolation.level is read_committed; every consumer
made here states its isolation level explicitly.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# Long enough for a first FindCoordinator that has to create the transaction
# state topic; short enough that a broker without a transaction coordinator
# fails the test quickly (librdkafka keeps retrying FindCoordinator until then).
INIT_TIMEOUT_S = 10.0
TXN_OP_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 20.0

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"

# What librdkafka reports to a producer that was fenced by a newer instance
# with the same transactional.id (the broker may answer either
# PRODUCER_FENCED or INVALID_PRODUCER_EPOCH; librdkafka raises _FENCED or the
# broker's code, always as a fatal error).
FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


def create_topic(bootstrap: str, name: str, partitions: int, replication_factor: int = 1, config: dict | None = None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=dict(config or {}))]
    )
    futures[name].result(30)


def txn_producer(bootstrap: str, transactional_id: str, **overrides) -> Producer:
    """A transactional librdkafka producer (idempotence and acks=all are implied).
    message.timeout.ms is left unset: librdkafka refuses one larger than
    transaction.timeout.ms and otherwise derives it from it."""
    config = {
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "linger.ms": 5,
        "retry.backoff.ms": 50,
        "reconnect.backoff.ms": 20,
        "reconnect.backoff.max.ms": 500,
    }
    if os.environ.get("ODRADEK_TXN_DEBUG"):  # e.g. eos,protocol: librdkafka's debug log on stderr
        config["debug"] = os.environ["ODRADEK_TXN_DEBUG"]
    config.update(overrides)
    return Producer(config)


def plain_producer(bootstrap: str, **overrides) -> Producer:
    """A non-transactional idempotent producer, writing between and during transactions."""
    config = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    config.update(overrides)
    return Producer(config)


def kafka_error(exc: KafkaException) -> KafkaError:
    return exc.args[0]


def describe(err: KafkaError) -> str:
    return (
        f"{err.name()} ({err.code()}): {err.str()} "
        f"[fatal={err.fatal()} retriable={err.retriable()} txn_requires_abort={err.txn_requires_abort()}]"
    )


def init_transactions(p: Producer, what: str = "producer", timeout_s: float = INIT_TIMEOUT_S) -> None:
    """init_transactions, failing the test with a clear reason: a broker without
    a transaction coordinator answers FindCoordinator(key_type=TRANSACTION)
    with COORDINATOR_NOT_AVAILABLE (librdkafka then retries until the timeout:
    _TIMED_OUT) or InitProducerId with an error."""
    try:
        p.init_transactions(timeout_s)
    except KafkaException as e:
        pytest.fail(
            f"{what}: init_transactions failed after at most {timeout_s}s: {describe(kafka_error(e))} -- "
            "the broker must find a transaction coordinator (FindCoordinator key_type=1) and answer "
            "InitProducerId for a transactional.id",
            pytrace=False,
        )


def txn_call(what: str, fn, *args):
    """A transactional call (begin/commit/abort/send_offsets) that must succeed."""
    try:
        return fn(*args)
    except KafkaException as e:
        pytest.fail(f"{what} failed: {describe(kafka_error(e))}", pytrace=False)


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Sent:
    """Every record produced by the test, with the offset its delivery report gave."""

    records: list[Rec] = field(default_factory=list)
    errors: list[tuple[bytes, str]] = field(default_factory=list)

    def callback(self, err, msg):
        if err is not None:
            self.errors.append((msg.value(), str(err)))
        else:
            self.records.append(Rec(msg.partition(), msg.offset(), msg.key(), msg.value()))

    def by_value(self) -> dict[bytes, Rec]:
        return {r.value: r for r in self.records}


def produce(p: Producer, topic: str, sent: Sent, items: list[tuple[int, str]], flush: bool = True) -> None:
    """Produce (partition, value) items; key = value. With flush, wait for
    every delivery report and fail on any delivery error."""
    before = len(sent.errors)
    for partition, value in items:
        p.produce(topic, key=value.encode(), value=value.encode(), partition=partition, on_delivery=sent.callback)
        p.poll(0)
    if flush:
        remaining = p.flush(TXN_OP_TIMEOUT_S)
        assert remaining == 0, f"{remaining} records not delivered after {TXN_OP_TIMEOUT_S}s"
        assert len(sent.errors) == before, f"delivery errors: {sent.errors[before:][:5]}"


def consumer(bootstrap: str, isolation: str, **overrides) -> Consumer:
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": f"txn-readback-{isolation}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
    }
    config.update(overrides)
    return Consumer(config)


def watermarks(bootstrap: str, topic: str, partition: int, isolation: str) -> tuple[int, int]:
    """(low, high) from ListOffsets with the consumer's isolation level: high is
    the high watermark for read_uncommitted and the last stable offset for
    read_committed."""
    c = consumer(bootstrap, isolation)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10.0, cached=False)
    finally:
        c.close()


def read_all(
    bootstrap: str, topic: str, partitions: list[int], isolation: str, timeout_s: float = READ_TIMEOUT_S
) -> dict[int, list[Rec]]:
    """Every record a consumer with this isolation level is given, per
    partition, from offset 0 until it reports end of partition at or past the
    high watermark (taken at the start: call this once nothing is open or
    being written). Fails on any consumer error."""
    ends = {p: watermarks(bootstrap, topic, p, READ_UNCOMMITTED)[1] for p in partitions}
    out: dict[int, list[Rec]] = {p: [] for p in partitions}
    pending = {p for p in partitions if ends[p] > 0}
    if not pending:
        return out
    c = consumer(bootstrap, isolation)
    try:
        c.assign([TopicPartition(topic, p, 0) for p in pending])
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in c.consume(num_messages=500, timeout=0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if msg.offset() >= ends[msg.partition()]:
                            pending.discard(msg.partition())
                        continue
                    raise AssertionError(f"consumer error ({isolation}): {describe(err)}")
                out[msg.partition()].append(Rec(msg.partition(), msg.offset(), msg.key(), msg.value()))
        if pending:
            raise AssertionError(
                f"{isolation} consumer did not reach the end of partitions {sorted(pending)} of {topic} "
                f"(high watermarks {ends}) within {timeout_s}s; read so far: "
                f"{ {p: [(r.offset, r.value) for r in recs[-5:]] for p, recs in out.items()} }"
            )
    finally:
        c.close()
    return out


def poll_records(c: Consumer, seconds: float) -> list[Rec]:
    """Whatever an assigned consumer returns within `seconds` (EOFs skipped)."""
    got: list[Rec] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for msg in c.consume(num_messages=500, timeout=0.1):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer error: {describe(err)}")
            got.append(Rec(msg.partition(), msg.offset(), msg.key(), msg.value()))
    return got


def poll_until(c: Consumer, count: int, timeout_s: float = READ_TIMEOUT_S) -> list[Rec]:
    """At least `count` records (or whatever came within the timeout)."""
    got: list[Rec] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += poll_records(c, 0.2)
    return got


def offsets_values(recs: list[Rec]) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for r in recs]


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")
