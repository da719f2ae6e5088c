"""Hand-encoded transaction admin requests (harness/wire.py primitives).

No client pinned here has them: confluent-kafka 2.16.1's AdminClient has no
list_transactions / describe_transactions / describe_producers (librdkafka 2.16
has no such admin calls either), kafka-python 2.3.3's KafkaAdminClient,
aiokafka 0.14.0 and kafkajs 2.2.4 neither. These are the requests Kafka's
own AdminClient (kafka-transactions.sh) sends, encoded from the message
schemas (all flexible versions: request header v2, response header v1):

  DescribeProducers    (61) v0
  DescribeTransactions (65) v0
  ListTransactions     (66) v0
  FindCoordinator      (10) v1 (key_type 1 = TRANSACTION), not flexible
"""

from __future__ import annotations

from dataclasses import dataclass

from harness import wire

FIND_COORDINATOR = 10
DESCRIBE_PRODUCERS = 61
DESCRIBE_TRANSACTIONS = 65
LIST_TRANSACTIONS = 66

COORDINATOR_TRANSACTION = 1


# -- compact encoding (flexible versions) ------------------------------------
def compact_array(items: list[bytes]) -> bytes:
    return wire.uvarint(len(items) + 1) + b"".join(items)


TAGS = wire.EMPTY_TAGGED_FIELDS


class R(wire.Reader):
    """wire.Reader plus the compact types of flexible versions."""

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            b = self._take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def compact_string(self) -> str:
        n = self.uvarint() - 1
        if n < 0:
            raise wire.ProtocolError("null compact string where one is required")
        return self._take(n).decode()

    def compact_nullable_string(self) -> str | None:
        n = self.uvarint() - 1
        return None if n < 0 else self._take(n).decode()

    def compact_array(self, item) -> list:
        n = self.uvarint() - 1
        return [] if n < 0 else [item(self) for _ in range(n)]

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())


def _call(host: str, port: int, api_key: int, version: int, body: bytes, flexible: bool = True) -> R:
    with wire.Connection(host, port, timeout_s=10.0) as conn:
        cid = conn.next_correlation_id()
        conn.send(wire.frame(wire.request_header(api_key, version, cid, flexible=flexible) + body))
        return R(conn.recv_response(cid, flexible_header=flexible))


# -- DescribeProducers ---------------------------------------------------------
@dataclass
class ProducerState:
    producer_id: int
    producer_epoch: int
    last_sequence: int
    last_timestamp: int
    coordinator_epoch: int
    current_txn_start_offset: int


@dataclass
class ProducersOfPartition:
    topic: str
    partition: int
    error_code: int
    error_message: str | None
    producers: list[ProducerState]


def describe_producers(host: str, port: int, topic: str, partitions: list[int]) -> list[ProducersOfPartition]:
    body = compact_array(
        [wire.compact_string(topic) + compact_array([wire.int32(p) for p in partitions]) + TAGS]
    ) + TAGS
    r = _call(host, port, DESCRIBE_PRODUCERS, 0, body)
    r.int32()  # throttle_time_ms

    def producer(rr: R) -> ProducerState:
        s = ProducerState(rr.int64(), rr.int32(), rr.int32(), rr.int64(), rr.int32(), rr.int64())
        rr.tags()
        return s

    out: list[ProducersOfPartition] = []

    def topic_response(rr: R) -> None:
        name = rr.compact_string()

        def partition(rp: R) -> None:
            index, code, message = rp.int32(), rp.int16(), rp.compact_nullable_string()
            producers = rp.compact_array(producer)
            rp.tags()
            out.append(ProducersOfPartition(name, index, code, message, producers))

        rr.compact_array(partition)
        rr.tags()

    r.compact_array(topic_response)
    r.tags()
    return out


# -- DescribeTransactions ----------------------------------------------------------
@dataclass
class TransactionDescription:
    error_code: int
    transactional_id: str
    state: str
    timeout_ms: int
    start_time_ms: int
    producer_id: int
    producer_epoch: int
    topics: dict[str, list[int]]


def describe_transactions(host: str, port: int, transactional_ids: list[str]) -> list[TransactionDescription]:
    body = compact_array([wire.compact_string(t) for t in transactional_ids]) + TAGS
    r = _call(host, port, DESCRIBE_TRANSACTIONS, 0, body)
    r.int32()  # throttle_time_ms

    def topic(rr: R) -> tuple[str, list[int]]:
        name = rr.compact_string()
        partitions = rr.compact_array(lambda x: x.int32())
        rr.tags()
        return name, partitions

    def state(rr: R) -> TransactionDescription:
        d = TransactionDescription(
            error_code=rr.int16(),
            transactional_id=rr.compact_string(),
            state=rr.compact_string(),
            timeout_ms=rr.int32(),
            start_time_ms=rr.int64(),
            producer_id=rr.int64(),
            producer_epoch=rr.int16(),
            topics=dict(rr.compact_array(topic)),
        )
        rr.tags()
        return d

    states = r.compact_array(state)
    r.tags()
    return states


# -- ListTransactions -------------------------------------------------------------
@dataclass
class TransactionListing:
    error_code: int
    unknown_state_filters: list[str]
    transactions: list[tuple[str, int, str]]  # (transactional id, producer id, state)


def list_transactions(
    host: str, port: int, state_filters: list[str] | None = None, producer_id_filters: list[int] | None = None
) -> TransactionListing:
    body = (
        compact_array([wire.compact_string(s) for s in state_filters or []])
        + compact_array([wire.int64(p) for p in producer_id_filters or []])
        + TAGS
    )
    r = _call(host, port, LIST_TRANSACTIONS, 0, body)
    r.int32()  # throttle_time_ms
    code = r.int16()
    unknown = r.compact_array(lambda x: x.compact_string())

    def state(rr: R) -> tuple[str, int, str]:
        t = (rr.compact_string(), rr.int64(), rr.compact_string())
        rr.tags()
        return t

    states = r.compact_array(state)
    r.tags()
    return TransactionListing(code, unknown, states)


# -- FindCoordinator v1 (transaction coordinator) -----------------------------------
@dataclass
class Coordinator:
    error_code: int
    node_id: int
    host: str
    port: int


def find_transaction_coordinator(host: str, port: int, transactional_id: str) -> Coordinator:
    body = wire.string(transactional_id) + wire.int8(COORDINATOR_TRANSACTION)
    r = _call(host, port, FIND_COORDINATOR, 1, body, flexible=False)
    r.int32()  # throttle_time_ms
    code = r.int16()
    r.nullable_string()  # error_message
    return Coordinator(code, r.int32(), r.string(), r.int32())
