"""rd_kafka_DeleteConsumerGroupOffsets through ctypes on the librdkafka bundled with confluent-kafka: the C client has
the OffsetDelete admin call, the Python binding (2.16.1) does not expose it."""

from __future__ import annotations

import ctypes
import glob
import os

_LIB = None


class _TP(ctypes.Structure):
    _fields_ = [("topic", ctypes.c_char_p), ("partition", ctypes.c_int32), ("offset", ctypes.c_int64),
                ("metadata", ctypes.c_void_p), ("metadata_size", ctypes.c_size_t), ("opaque", ctypes.c_void_p),
                ("err", ctypes.c_int), ("_private", ctypes.c_void_p)]


class _TPList(ctypes.Structure):
    _fields_ = [("cnt", ctypes.c_int), ("size", ctypes.c_int), ("elems", ctypes.POINTER(_TP))]


def _lib():
    global _LIB
    if _LIB is None:
        import confluent_kafka
        libs = glob.glob(os.path.join(os.path.dirname(confluent_kafka.__file__), os.pardir, "confluent_kafka.libs", "librdkafka*.so*"))
        lib = ctypes.CDLL(libs[0])
        vp = ctypes.c_void_p
        for name, res, args in [
            ("rd_kafka_conf_new", vp, []),
            ("rd_kafka_conf_set", ctypes.c_int, [vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]),
            ("rd_kafka_new", vp, [ctypes.c_int, vp, ctypes.c_char_p, ctypes.c_size_t]),
            ("rd_kafka_destroy", None, [vp]),
            ("rd_kafka_queue_new", vp, [vp]),
            ("rd_kafka_queue_destroy", None, [vp]),
            ("rd_kafka_queue_poll", vp, [vp, ctypes.c_int]),
            ("rd_kafka_event_destroy", None, [vp]),
            ("rd_kafka_event_error", ctypes.c_int, [vp]),
            ("rd_kafka_event_error_string", ctypes.c_char_p, [vp]),
            ("rd_kafka_topic_partition_list_new", ctypes.POINTER(_TPList), [ctypes.c_int]),
            ("rd_kafka_topic_partition_list_add", ctypes.POINTER(_TP), [ctypes.POINTER(_TPList), ctypes.c_char_p, ctypes.c_int32]),
            ("rd_kafka_topic_partition_list_destroy", None, [ctypes.POINTER(_TPList)]),
            ("rd_kafka_DeleteConsumerGroupOffsets_new", vp, [ctypes.c_char_p, ctypes.POINTER(_TPList)]),
            ("rd_kafka_DeleteConsumerGroupOffsets_destroy", None, [vp]),
            ("rd_kafka_DeleteConsumerGroupOffsets", None, [vp, ctypes.POINTER(vp), ctypes.c_size_t, vp, vp]),
            ("rd_kafka_event_DeleteConsumerGroupOffsets_result", vp, [vp]),
            ("rd_kafka_DeleteConsumerGroupOffsets_result_groups", ctypes.POINTER(vp), [vp, ctypes.POINTER(ctypes.c_size_t)]),
            ("rd_kafka_group_result_error", vp, [vp]),
            ("rd_kafka_group_result_partitions", ctypes.POINTER(_TPList), [vp]),
            ("rd_kafka_error_code", ctypes.c_int, [vp]),
        ]:
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        _LIB = lib
    return _LIB


def delete_consumer_group_offsets(bootstrap, group, tps, timeout_s=10.0):
    """librdkafka's rd_kafka_DeleteConsumerGroupOffsets: (group error code, {(topic, partition): error code})."""
    lib = _lib()
    err = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    assert lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), err, 512) == 0, err.value
    rk = lib.rd_kafka_new(0, conf, err, 512)  # RD_KAFKA_PRODUCER
    assert rk, err.value
    queue = lib.rd_kafka_queue_new(rk)
    plist = lib.rd_kafka_topic_partition_list_new(len(tps))
    for topic, partition in tps:
        lib.rd_kafka_topic_partition_list_add(plist, topic.encode(), partition)
    request = lib.rd_kafka_DeleteConsumerGroupOffsets_new(group.encode(), plist)
    lib.rd_kafka_topic_partition_list_destroy(plist)
    try:
        arr = (ctypes.c_void_p * 1)(request)
        lib.rd_kafka_DeleteConsumerGroupOffsets(rk, arr, 1, None, queue)
        event = lib.rd_kafka_queue_poll(queue, int(timeout_s * 1000))
        assert event, "no DeleteConsumerGroupOffsets result"
        try:
            code = lib.rd_kafka_event_error(event)
            if code:
                return code, {}
            result = lib.rd_kafka_event_DeleteConsumerGroupOffsets_result(event)
            n = ctypes.c_size_t()
            groups = lib.rd_kafka_DeleteConsumerGroupOffsets_result_groups(result, ctypes.byref(n))
            assert n.value == 1
            gerr = lib.rd_kafka_group_result_error(groups[0])
            gcode = lib.rd_kafka_error_code(gerr) if gerr else 0
            parts = lib.rd_kafka_group_result_partitions(groups[0])
            out = {}
            if parts:
                for i in range(parts.contents.cnt):
                    e = parts.contents.elems[i]
                    out[(e.topic.decode(), e.partition)] = e.err
            return gcode, out
        finally:
            lib.rd_kafka_event_destroy(event)
    finally:
        lib.rd_kafka_DeleteConsumerGroupOffsets_destroy(request)
        lib.rd_kafka_queue_destroy(queue)
        lib.rd_kafka_destroy(rk)
