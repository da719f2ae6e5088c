"""The broker's command line and config file, observed through clients:
--set, --config (TOML with Kafka's property names), --advertised, --node-id."""

from __future__ import annotations

import subprocess

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from harness import wire
from harness.broker import broker_binary, free_loopback_port
from harness.wire import Connection

TIMEOUT_S = 15


def partitions_after_auto_create(broker, topic: str) -> list[int]:
    with Connection(broker.host, broker.port, timeout_s=TIMEOUT_S) as conn:
        meta = conn.wait_topic_ready(topic)
    return sorted(p.index for p in meta.partitions)


def test_set_num_partitions_applies_to_auto_created_topics(broker_factory, topic):
    broker = broker_factory(["--set", "num.partitions=3"])
    assert partitions_after_auto_create(broker, topic) == [0, 1, 2]


def test_config_file_uses_kafka_property_names(broker_factory, tmp_path, topic):
    config = tmp_path / "odradek.toml"
    config.write_text('"num.partitions" = 2\n"log.retention.ms" = 3600000\n')
    broker = broker_factory(["--config", str(config)])
    assert partitions_after_auto_create(broker, topic) == [0, 1]
    # A topic without overrides inherits the broker's retention.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    assert configs["retention.ms"].value == "3600000"


def test_auto_create_disabled(broker_factory, topic):
    broker = broker_factory(["--set", "auto.create.topics.enable=false"])
    with Connection(broker.host, broker.port, timeout_s=TIMEOUT_S) as conn:
        meta = conn.metadata([topic], allow_auto_create=True)[topic]
        assert meta.error_code == wire.UNKNOWN_TOPIC_OR_PARTITION
    errors = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 3000})
    producer.produce(topic, b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert [e.code() for e in errors] in ([KafkaError.UNKNOWN_TOPIC_OR_PART], [KafkaError._MSG_TIMED_OUT])
    assert topic not in AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=TIMEOUT_S).topics


def test_advertised_address_and_node_id(broker_factory):
    # The broker listens on 127.0.0.1 but tells clients "localhost".
    port = free_loopback_port()
    broker = broker_factory(["--advertised", f"localhost:{port}", "--node-id", "7"], port=port)
    meta = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=TIMEOUT_S)
    assert [(b.id, b.host, b.port) for b in meta.brokers.values()] == [(7, "localhost", port)]
    assert meta.controller_id == 7


@pytest.mark.parametrize("bad_args", [["--set", "num.partitions"], ["--no-such-flag"]], ids=["no-value", "unknown-flag"])
def test_bad_command_line_fails_fast(tmp_path, bad_args):
    proc = subprocess.run(
        [str(broker_binary()), "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path), "--dev", *bad_args],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode != 0 and proc.stderr.strip(), (proc.returncode, proc.stderr)
