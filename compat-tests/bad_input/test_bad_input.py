"""Malformed and hostile input against a real odradek process, over raw
sockets, with the bytes written by hand (harness/wire.py) after the
documented Kafka wire format. Each test checks the exact reaction (closed
connection or a precise error code) and that the broker keeps serving
other connections afterwards."""

from __future__ import annotations

import socket

import pytest

from harness import wire
from harness.wire import Connection

SOCKET_REQUEST_MAX_BYTES = 104857600  # Kafka's socket.request.max.bytes default
CLOSE_TIMEOUT_S = 10.0


def assert_serving(broker) -> None:
    """A new connection still gets ApiVersions answered."""
    answer = wire.api_versions(broker.host, broker.port)
    assert answer.error_code == wire.NONE and wire.API_VERSIONS in answer.api_ranges


def connect(broker) -> Connection:
    return Connection(broker.host, broker.port, timeout_s=CLOSE_TIMEOUT_S)


def closed_or_answered(conn: Connection, correlation_id: int) -> str:
    """For requests where Kafka allows either: 'closed' if the broker drops
    the connection, 'answered' if it sends a response with our correlation id."""
    try:
        conn.recv_response(correlation_id)
        return "answered"
    except wire.ConnectionClosed:
        return "closed"


def test_oversized_frame_closes_only_that_connection(broker):
    with connect(broker) as bystander, connect(broker) as attacker:
        assert bystander.api_versions().error_code == wire.NONE
        attacker.send(wire.int32(SOCKET_REQUEST_MAX_BYTES + 1) + b"\x00" * 64)
        assert attacker.wait_closed(CLOSE_TIMEOUT_S), "oversized frame did not close the connection"
        # The connection opened before the attack is unaffected.
        assert bystander.api_versions().error_code == wire.NONE
    assert_serving(broker)


def test_oversized_frame_costs_no_memory(broker):
    """The size is checked before allocating: a 2 GiB claim must not grow RSS."""
    rss_before_kib = broker.rss_kib()
    with connect(broker) as attacker:
        attacker.send(wire.int32(0x7FFFFFFF) + b"\x01" * 4096)
        assert attacker.wait_closed(CLOSE_TIMEOUT_S)
    assert broker.rss_kib() - rss_before_kib < 64 * 1024
    assert_serving(broker)


@pytest.mark.parametrize("size", [-1, -2147483648, 0], ids=["minus-one", "int32-min", "zero"])
def test_negative_or_zero_frame_size_closes_connection(broker, size):
    with connect(broker) as conn:
        conn.send(wire.int32(size) + b"\x00" * 16)
        assert conn.wait_closed(CLOSE_TIMEOUT_S)
    assert_serving(broker)


def test_frame_truncated_by_eof(broker):
    with connect(broker) as conn:
        request = wire.api_versions_request_v0(1)
        conn.send(wire.int32(100) + request[4:])  # claims 100 bytes, sends 10
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.wait_closed(CLOSE_TIMEOUT_S), "broker kept a half-sent frame open after EOF"
    assert_serving(broker)


def test_request_header_truncated_inside_frame(broker):
    with connect(broker) as conn:
        conn.send(wire.frame(wire.int16(wire.METADATA) + b"\x00"))  # 3 bytes: no version, no correlation id
        assert conn.wait_closed(CLOSE_TIMEOUT_S)
    assert_serving(broker)


def test_request_body_truncated_inside_frame(broker):
    with connect(broker) as conn:
        # Metadata v4 announcing 3 topics but carrying one, and no allow_auto_topic_creation.
        body = wire.int32(3) + wire.string("only-one")
        conn.send(wire.frame(wire.request_header(wire.METADATA, 4, 7) + body))
        assert conn.wait_closed(CLOSE_TIMEOUT_S), "truncated Metadata body did not close the connection"
    assert_serving(broker)


def test_unknown_api_key_closes_connection(broker):
    with connect(broker) as conn:
        conn.send(wire.frame(wire.request_header(9999, 0, 5) + b"\x00" * 8))
        assert conn.wait_closed(CLOSE_TIMEOUT_S), "unknown API key did not close the connection"
    assert_serving(broker)


def test_unsupported_version_of_known_api_closes_connection(broker):
    with connect(broker) as conn:
        conn.send(wire.frame(wire.request_header(wire.METADATA, 999, 5) + wire.int32(-1) + wire.int8(0)))
        assert conn.wait_closed(CLOSE_TIMEOUT_S), "Metadata v999 did not close the connection"
    assert_serving(broker)


def test_api_versions_too_new_answers_v0_with_unsupported_version(broker):
    with connect(broker) as conn:
        reference = conn.api_versions()
        cid = conn.next_correlation_id()
        conn.send(wire.api_versions_request_flexible(cid, version=99))
        # KIP-511: the answer is an ApiVersionsResponse v0 (response header v0)
        # with UNSUPPORTED_VERSION and the broker's API list, so the client can
        # retry with a version it finds there.
        answer = wire.parse_api_versions_v0(conn.recv_response(cid))
        assert answer.error_code == wire.UNSUPPORTED_VERSION
        assert wire.API_VERSIONS in answer.api_ranges
        assert answer.api_ranges == reference.api_ranges
        # The connection stays usable for the retry.
        assert conn.api_versions().error_code == wire.NONE


def test_api_versions_v3_flexible_answer(broker):
    with connect(broker) as conn:
        reference = conn.api_versions()
        lo, hi = reference.api_ranges[wire.API_VERSIONS]
        assert lo == 0 and hi >= 3, f"ApiVersions versions {lo}..{hi}"
        cid = conn.next_correlation_id()
        conn.send(wire.api_versions_request_flexible(cid, version=3))
        # ApiVersions responses always use response header v0 (no tagged fields).
        r = wire.Reader(conn.recv_response(cid))
        assert r.int16() == wire.NONE
        count = wire._read_uvarint(r) - 1
        ranges = {}
        for _ in range(count):
            key, min_v, max_v = r.int16(), r.int16(), r.int16()
            assert wire._read_uvarint(r) == 0  # no tagged fields
            ranges[key] = (min_v, max_v)
        assert ranges == reference.api_ranges
        assert r.int32() >= 0  # throttle_time_ms


def test_produce_with_corrupt_crc_gets_corrupt_message(broker, topic):
    with connect(broker) as conn:
        version = conn.produce_version()
        conn.wait_topic_ready(topic)

        good = wire.record_batch([wire.Record(b"first", b"k")])
        (ok,) = conn.produce(version, topic, 0, good)
        assert (ok.error_code, ok.base_offset) == (wire.NONE, 0)

        corrupt = wire.record_batch([wire.Record(b"corrupt", b"k")], corrupt_crc=True)
        (bad,) = conn.produce(version, topic, 0, corrupt)
        assert (bad.topic, bad.index, bad.error_code) == (topic, 0, wire.CORRUPT_MESSAGE)

        # Nothing of the corrupt batch was appended: the next one gets offset 1.
        (after,) = conn.produce(version, topic, 0, wire.record_batch([wire.Record(b"second", b"k")]))
        assert (after.error_code, after.base_offset) == (wire.NONE, 1)
    assert_serving(broker)


@pytest.mark.parametrize("count", [-2, 0x7FFFFFFF], ids=["negative", "huge"])
def test_metadata_with_bad_topic_array_count(broker, count):
    with connect(broker) as conn:
        cid = 11
        conn.send(wire.frame(wire.request_header(wire.METADATA, 4, cid) + wire.int32(count) + wire.int8(0)))
        outcome = closed_or_answered(conn, cid)
        assert outcome in ("closed", "answered")
    assert_serving(broker)


def test_many_garbage_connections_in_a_row(broker):
    """A burst of junk connections leaves no lasting damage."""
    junk = [b"", b"\xff" * 3, wire.int32(5) + b"\x00\x12\x00", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
    for i in range(40):
        with connect(broker) as conn:
            conn.send(junk[i % len(junk)])
            if i % 2:
                conn.sock.shutdown(socket.SHUT_WR)
    assert_serving(broker)
