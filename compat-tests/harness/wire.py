"""A small, hand-written codec for the Kafka wire format, for tests that
must send exactly the bytes they mean (malformed frames, corrupt CRCs,
unsupported versions) and check exact error codes in the answers.

Follows the documented protocol (kafka.apache.org/protocol):
  frame            = int32 size, then `size` bytes
  request header   v1 = api_key int16, api_version int16, correlation_id int32,
                        client_id nullable string (int16 length)
                   v2 = v1 + tagged fields (uvarint count)
  response header  v0 = correlation_id int32; v1 = v0 + tagged fields
Only the non-flexible versions of Produce and Metadata are encoded here,
which every broker that supports the newer ones must still accept.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# API keys (kafka/common/protocol/ApiKeys)
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
API_VERSIONS = 18
INIT_PRODUCER_ID = 22

# Error codes (kafka/common/protocol/Errors)
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
MESSAGE_TOO_LARGE = 10
NOT_ENOUGH_REPLICAS = 19
UNSUPPORTED_VERSION = 35
OUT_OF_ORDER_SEQUENCE_NUMBER = 45


class ProtocolError(Exception):
    """The peer answered something that does not parse or is not an answer."""


class ConnectionClosed(ProtocolError):
    """The peer closed the connection (EOF or reset) before a full frame."""


# --------------------------------------------------------------------------
# Primitive encoding
# --------------------------------------------------------------------------
def int8(v: int) -> bytes:
    return struct.pack(">b", v)


def int16(v: int) -> bytes:
    return struct.pack(">h", v)


def int32(v: int) -> bytes:
    return struct.pack(">i", v)


def uint32(v: int) -> bytes:
    return struct.pack(">I", v)


def int64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str) -> bytes:
    raw = s.encode()
    return int16(len(raw)) + raw


def nullable_string(s: str | None) -> bytes:
    return int16(-1) if s is None else string(s)


def kbytes(b: bytes | None) -> bytes:
    return int32(-1) if b is None else int32(len(b)) + b


def array(items: list[bytes]) -> bytes:
    return int32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Signed zig-zag varint (used for varint and varlong alike)."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str) -> bytes:
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


EMPTY_TAGGED_FIELDS = uvarint(0)


# --------------------------------------------------------------------------
# Primitive decoding
# --------------------------------------------------------------------------
class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError(f"short read: want {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def int8(self) -> int:
        return self._unpack(">b")

    def boolean(self) -> bool:
        return self.int8() != 0

    def int16(self) -> int:
        return self._unpack(">h")

    def int32(self) -> int:
        return self._unpack(">i")

    def int64(self) -> int:
        return self._unpack(">q")

    def string(self) -> str:
        n = self.int16()
        if n < 0:
            raise ProtocolError("null where a string is required")
        return self._take(n).decode()

    def nullable_string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._take(n).decode()

    def array(self, item) -> list | None:
        n = self.int32()
        if n < 0:
            return None
        if n > len(self.data):  # cheap sanity bound: every item is >= 1 byte
            raise ProtocolError(f"array count {n} larger than the frame")
        return [item(self) for _ in range(n)]

    def remaining(self) -> int:
        return len(self.data) - self.pos


# --------------------------------------------------------------------------
# CRC-32C (Castagnoli), as used by record batch magic v2
# --------------------------------------------------------------------------
def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --------------------------------------------------------------------------
# Record batches (magic v2)
# --------------------------------------------------------------------------
@dataclass
class Record:
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def encode_record(offset_delta: int, timestamp_delta: int, record: Record) -> bytes:
    body = bytearray()
    body += int8(0)  # attributes: unused
    body += varint(timestamp_delta)
    body += varint(offset_delta)
    body += varint(-1) if record.key is None else varint(len(record.key)) + record.key
    body += varint(-1) if record.value is None else varint(len(record.value)) + record.value
    body += varint(len(record.headers))
    for name, value in record.headers:
        raw_name = name.encode()
        body += varint(len(raw_name)) + raw_name
        body += varint(-1) if value is None else varint(len(value)) + value
    return varint(len(body)) + bytes(body)


def record_batch(
    records: list[Record],
    base_timestamp_ms: int | None = None,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    corrupt_crc: bool = False,
) -> bytes:
    """An uncompressed magic-v2 batch with base offset 0 (the leader assigns
    offsets). With corrupt_crc the stored CRC is off by one bit."""
    if base_timestamp_ms is None:
        base_timestamp_ms = int(time.time() * 1000)
    encoded = b"".join(encode_record(i, 0, r) for i, r in enumerate(records))
    # Everything the CRC covers: attributes .. end of records.
    after_crc = (
        int16(0)  # attributes: no compression, CreateTime, not transactional
        + int32(len(records) - 1)  # last offset delta
        + int64(base_timestamp_ms)
        + int64(base_timestamp_ms)  # max timestamp (all deltas are 0)
        + int64(producer_id)
        + int16(producer_epoch)
        + int32(base_sequence)
        + int32(len(records))
        + encoded
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 1
    # batchLength counts from partitionLeaderEpoch to the end.
    after_length = int32(-1) + int8(2) + uint32(crc) + after_crc  # leader epoch, magic, crc
    return int64(0) + int32(len(after_length)) + after_length


# --------------------------------------------------------------------------
# Requests and framing
# --------------------------------------------------------------------------
CLIENT_ID = "odradek-compat-raw"


def request_header(api_key: int, api_version: int, correlation_id: int, flexible: bool = False) -> bytes:
    header = int16(api_key) + int16(api_version) + int32(correlation_id) + nullable_string(CLIENT_ID)
    return header + EMPTY_TAGGED_FIELDS if flexible else header


def frame(payload: bytes) -> bytes:
    return int32(len(payload)) + payload


def api_versions_request_v0(correlation_id: int) -> bytes:
    return frame(request_header(API_VERSIONS, 0, correlation_id))


def api_versions_request_flexible(correlation_id: int, version: int) -> bytes:
    """ApiVersions v3+ layout (header v2, client software name/version)."""
    body = compact_string("odradek-compat") + compact_string("1.0") + EMPTY_TAGGED_FIELDS
    return frame(request_header(API_VERSIONS, version, correlation_id, flexible=True) + body)


@dataclass
class ApiVersionsV0:
    error_code: int
    api_ranges: dict[int, tuple[int, int]]  # api_key -> (min_version, max_version)


def parse_api_versions_v0(body: bytes) -> ApiVersionsV0:
    r = Reader(body)
    error_code = r.int16()
    ranges = r.array(lambda rr: (rr.int16(), rr.int16(), rr.int16())) or []
    return ApiVersionsV0(error_code, {key: (lo, hi) for key, lo, hi in ranges})


def metadata_request_v4(correlation_id: int, topics: list[str] | None, allow_auto_create: bool = True) -> bytes:
    topics_field = int32(-1) if topics is None else array([string(t) for t in topics])
    body = topics_field + int8(1 if allow_auto_create else 0)
    return frame(request_header(METADATA, 4, correlation_id) + body)


@dataclass
class PartitionMetadata:
    error_code: int
    index: int
    leader_id: int


@dataclass
class TopicMetadata:
    error_code: int
    name: str
    partitions: list[PartitionMetadata]


def parse_metadata_v4(body: bytes) -> dict[str, TopicMetadata]:
    r = Reader(body)
    r.int32()  # throttle_time_ms
    r.array(lambda rr: (rr.int32(), rr.string(), rr.int32(), rr.nullable_string()))  # brokers
    r.nullable_string()  # cluster_id
    r.int32()  # controller_id

    def partition(rr: Reader) -> PartitionMetadata:
        error_code, index, leader = rr.int16(), rr.int32(), rr.int32()
        rr.array(Reader.int32)  # replicas
        rr.array(Reader.int32)  # isr
        return PartitionMetadata(error_code, index, leader)

    def topic(rr: Reader) -> TopicMetadata:
        error_code, name = rr.int16(), rr.string()
        rr.boolean()  # is_internal
        return TopicMetadata(error_code, name, rr.array(partition) or [])

    return {t.name: t for t in r.array(topic) or []}


def produce_request(
    correlation_id: int, version: int, topic: str, partition: int, batch: bytes, acks: int = -1, timeout_ms: int = 10000
) -> bytes:
    """Produce v3..v8 (the non-flexible versions that carry magic-v2 batches)."""
    assert 3 <= version <= 8, version
    body = (
        nullable_string(None)  # transactional_id
        + int16(acks)
        + int32(timeout_ms)
        + array([string(topic) + array([int32(partition) + kbytes(batch)])])
    )
    return frame(request_header(PRODUCE, version, correlation_id) + body)


@dataclass
class ProducePartitionResponse:
    topic: str
    index: int
    error_code: int
    base_offset: int


def parse_produce_response(body: bytes, version: int) -> list[ProducePartitionResponse]:
    r = Reader(body)
    out = []
    for _ in range(r.int32()):
        topic = r.string()
        for _ in range(r.int32()):
            index, error_code, base_offset = r.int32(), r.int16(), r.int64()
            r.int64()  # log_append_time_ms
            if version >= 5:
                r.int64()  # log_start_offset
            if version >= 8:
                r.array(lambda rr: (rr.int32(), rr.nullable_string()))  # record_errors
                r.nullable_string()  # error_message
            out.append(ProducePartitionResponse(topic, index, error_code, base_offset))
    r.int32()  # throttle_time_ms
    return out


def init_producer_id_request_v0(correlation_id: int) -> bytes:
    """InitProducerId v0 for an idempotent (non-transactional) producer."""
    body = nullable_string(None) + int32(60000)  # transactional_id, transaction_timeout_ms
    return frame(request_header(INIT_PRODUCER_ID, 0, correlation_id) + body)


@dataclass
class ProducerIdentity:
    error_code: int
    producer_id: int
    producer_epoch: int


def parse_init_producer_id_v0(body: bytes) -> ProducerIdentity:
    r = Reader(body)
    r.int32()  # throttle_time_ms
    return ProducerIdentity(r.int16(), r.int64(), r.int16())


# --------------------------------------------------------------------------
# A blocking connection
# --------------------------------------------------------------------------
class Connection:
    def __init__(self, host: str, port: int, timeout_s: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next_correlation_id = 1

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def next_correlation_id(self) -> int:
        cid = self._next_correlation_id
        self._next_correlation_id += 1
        return cid

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exactly(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError as e:
                raise ConnectionClosed("connection reset by peer") from e
            if not chunk:
                raise ConnectionClosed(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self._recv_exactly(4))
        if size < 4 or size > 64 * 1024 * 1024:
            raise ProtocolError(f"implausible response size {size}")
        return self._recv_exactly(size)

    def recv_response(self, correlation_id: int, flexible_header: bool = False) -> bytes:
        """The body of the next response, checking its correlation id."""
        r = Reader(self.recv_frame())
        got = r.int32()
        if got != correlation_id:
            raise ProtocolError(f"correlation id {got}, expected {correlation_id}")
        if flexible_header:
            for _ in range(_read_uvarint(r)):
                _read_uvarint(r)
                r._take(_read_uvarint(r))
        return r.data[r.pos :]

    def wait_closed(self, timeout_s: float = 10.0) -> bool:
        """True if the peer closes the connection within timeout_s, reading
        and discarding anything it still sends."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionResetError, BrokenPipeError):
                return True
            except socket.timeout:
                return False
        return False

    # -- calls --------------------------------------------------------------
    def api_versions(self) -> ApiVersionsV0:
        cid = self.next_correlation_id()
        self.send(api_versions_request_v0(cid))
        return parse_api_versions_v0(self.recv_response(cid))

    def metadata(self, topics: list[str] | None, allow_auto_create: bool = True) -> dict[str, TopicMetadata]:
        cid = self.next_correlation_id()
        self.send(metadata_request_v4(cid, topics, allow_auto_create))
        return parse_metadata_v4(self.recv_response(cid))

    def produce(self, version: int, topic: str, partition: int, batch: bytes, acks: int = -1):
        cid = self.next_correlation_id()
        self.send(produce_request(cid, version, topic, partition, batch, acks))
        return parse_produce_response(self.recv_response(cid), version)

    def init_producer_id(self) -> ProducerIdentity:
        cid = self.next_correlation_id()
        self.send(init_producer_id_request_v0(cid))
        return parse_init_producer_id_v0(self.recv_response(cid))

    def produce_version(self) -> int:
        """The highest non-flexible Produce version the broker supports (3..8)."""
        lo, hi = self.api_versions().api_ranges[PRODUCE]
        version = min(hi, 8)
        if version < max(lo, 3):
            raise ProtocolError(f"no Produce version in 3..8 (broker supports {lo}..{hi})")
        return version

    def wait_topic_ready(self, topic: str, timeout_s: float = 15.0) -> TopicMetadata:
        """Metadata with auto-create until every partition has a leader."""
        deadline = time.monotonic() + timeout_s
        while True:
            meta = self.metadata([topic], allow_auto_create=True).get(topic)
            if meta and meta.error_code == NONE and meta.partitions and all(p.leader_id >= 0 for p in meta.partitions):
                return meta
            if time.monotonic() > deadline:
                raise ProtocolError(f"topic {topic} not ready after {timeout_s}s: {meta}")
            time.sleep(0.1)


def _read_uvarint(r: Reader) -> int:
    shift = value = 0
    while True:
        b = r._take(1)[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ProtocolError("uvarint too long")


def api_versions(host: str, port: int, timeout_s: float = 5.0) -> ApiVersionsV0:
    """One ApiVersions v0 round trip on a new connection."""
    with Connection(host, port, timeout_s) as conn:
        answer = conn.api_versions()
    if answer.error_code != NONE:
        raise ProtocolError(f"ApiVersions v0 error_code {answer.error_code}")
    return answer
