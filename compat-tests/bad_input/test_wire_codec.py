"""Checks the hand-written encoder in harness/wire.py against an independent
implementation (kafka-python's protocol module), so that a failing
bad-input test means a broker bug and not a bug in our bytes.
Needs no broker."""

import io

from kafka.protocol.metadata import MetadataRequest
from kafka.protocol.produce import ProduceRequest
from kafka.record.default_records import DefaultRecordBatch

from harness import wire


def test_crc32c_check_value():
    # The standard check value of CRC-32C (RFC 3720 appendix B.4).
    assert wire.crc32c(b"123456789") == 0xE3069283


def test_varint_zigzag():
    assert wire.varint(0) == b"\x00"
    assert wire.varint(-1) == b"\x01"
    assert wire.varint(1) == b"\x02"
    assert wire.varint(300) == b"\xd8\x04"


def test_record_batch_decodes_with_valid_crc():
    records = [
        wire.Record(b"v0", b"k0", [("h", b"x")]),
        wire.Record(None, b"tombstone-key"),
        wire.Record(b"v2", None, [("a", None), ("b", b"")]),
    ]
    raw = wire.record_batch(records, base_timestamp_ms=1_700_000_000_000)
    batch = DefaultRecordBatch(bytearray(raw))
    assert batch.validate_crc()
    decoded = [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in batch]
    assert decoded == [
        (0, b"k0", b"v0", [("h", b"x")], 1_700_000_000_000),
        (1, b"tombstone-key", None, [], 1_700_000_000_000),
        (2, None, b"v2", [("a", None), ("b", b"")], 1_700_000_000_000),
    ]


def test_corrupt_record_batch_fails_crc():
    raw = wire.record_batch([wire.Record(b"v")], corrupt_crc=True)
    assert not DefaultRecordBatch(bytearray(raw)).validate_crc()


def _strip_frame_and_header(frame: bytes, api_key: int, version: int, correlation_id: int) -> bytes:
    r = wire.Reader(frame)
    assert r.int32() == len(frame) - 4
    assert (r.int16(), r.int16(), r.int32(), r.nullable_string()) == (api_key, version, correlation_id, wire.CLIENT_ID)
    return frame[r.pos :]


def test_produce_request_matches_kafka_python():
    batch = wire.record_batch([wire.Record(b"v")])
    for version in range(3, 9):
        frame = wire.produce_request(7, version, "t", 2, batch, acks=-1, timeout_ms=1234)
        body = _strip_frame_and_header(frame, wire.PRODUCE, version, 7)
        decoded = ProduceRequest[version].decode(io.BytesIO(body))
        assert decoded.required_acks == -1 and decoded.timeout == 1234
        assert decoded.topics[0][0] == "t"
        assert decoded.topics[0][1][0][0] == 2
        assert bytes(decoded.topics[0][1][0][1]) == batch


def test_metadata_request_matches_kafka_python():
    frame = wire.metadata_request_v4(9, ["a", "b"], allow_auto_create=False)
    body = _strip_frame_and_header(frame, wire.METADATA, 4, 9)
    decoded = MetadataRequest[4].decode(io.BytesIO(body))
    assert list(decoded.topics) == ["a", "b"] and decoded.allow_auto_topic_creation is False
