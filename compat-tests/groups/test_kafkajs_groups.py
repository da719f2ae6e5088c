"""kafkajs consumer group: subscribe, consume, commit on disconnect, resume."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import create_topic, produce

RUNNER = Path(__file__).resolve().parent / "group_runner.js"


def consume(broker, topic, group, count):
    proc = subprocess.run(["node", str(RUNNER), broker.bootstrap, topic, group, str(count)],
                          capture_output=True, text=True, timeout=90)
    if proc.returncode != 0:
        pytest.fail(f"kafkajs group consumer failed:\n{proc.stderr[-3000:]}", pytrace=False)
    return json.loads(proc.stdout)


def test_kafkajs_group(gbroker, topic):
    create_topic(gbroker, topic, 2)
    produce(gbroker, topic, [f"{i}".encode() for i in range(30)], partitions=2)
    group = f"js-{topic}"
    assert sorted(consume(gbroker, topic, group, 30)) == sorted(str(i) for i in range(30))
    produce(gbroker, topic, [b"late"], partitions=2)
    assert consume(gbroker, topic, group, 1) == ["late"]
