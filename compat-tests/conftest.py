"""Fixtures shared by every compat test.

- `broker`: a real target/debug/odradek process shared by the tests of one
  module (a fresh one per module). Checked before and after every test: if a
  test leaves it dead, that test errors with the broker's log tail and the
  next test gets a new process on the same port and data dir.
- `fresh_broker`: a process of the test's own, for tests that restart it.
- `broker_factory`: starts processes of the test's own with extra arguments.
- `topic`: a topic name unique to the test.
- `cluster`: a fresh 3-node odradek cluster (harness/cluster.py) of the
  test's own, --dev, with short failover timings, already formed.
- `cluster_factory(props=..., network=...)`: clusters with extra broker
  properties or network="netns" (isolate()/heal()).
Every failing test that used a broker or a cluster gets the tail of its
log(s) attached to its report.
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.broker import BrokerProcess  # noqa: E402
from harness.cluster import Cluster, detect_cluster_support  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_cluster: starts a real 3-node odradek cluster")


def _new_broker(tmp_path_factory, name: str, **kwargs) -> BrokerProcess:
    base = tmp_path_factory.mktemp(name)
    return BrokerProcess(data_dir=base / "data", log_dir=base / "logs", **kwargs)


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory, request):
    broker = _new_broker(tmp_path_factory, f"broker-{request.module.__name__}")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(module_broker: BrokerProcess):
    if not module_broker.running():
        # A previous test killed it (and was reported for it); start afresh.
        module_broker.start()
    yield module_broker
    if not module_broker.running():
        code = module_broker.proc.returncode if module_broker.proc else None
        pytest.fail(
            f"odradek died during this test (exit code {code})\n{module_broker.describe_failure()}", pytrace=False
        )


@pytest.fixture
def fresh_broker(tmp_path_factory, request):
    broker = _new_broker(tmp_path_factory, "own-broker")
    broker.start()
    yield broker
    if broker.running():
        broker.stop()


@pytest.fixture
def broker_factory(tmp_path_factory):
    """start(extra_args=[...]) -> a started broker of the test's own, with
    extra command-line arguments (e.g. --set key=value); all are stopped at
    the end of the test."""
    started: list[BrokerProcess] = []

    def start(extra_args: list[str] | None = None, **kwargs) -> BrokerProcess:
        broker = _new_broker(tmp_path_factory, "configured-broker", extra_args=extra_args, **kwargs)
        started.append(broker)
        broker.start()
        return broker

    yield start
    for broker in started:
        if broker.running():
            broker.stop()


@pytest.fixture
def cluster_factory(tmp_path_factory, request):
    """start(props={...}, network="loopback"|"netns"|"auto") -> a formed
    3-node cluster of the test's own; all are torn down at the end."""
    started: list[Cluster] = []

    def start(props: dict | None = None, network: str = "loopback", **kwargs) -> Cluster:
        ok, reason = detect_cluster_support(kwargs.get("binary"))
        if not ok:
            pytest.fail(f"cannot start a cluster: {reason}", pytrace=False)
        base = tmp_path_factory.mktemp("cluster")
        c = Cluster(base, props=props, network=network, **kwargs)
        started.append(c)
        request.node._odradek_clusters = list(started)
        c.start_all()
        return c

    yield start
    for c in started:
        c.shutdown()


@pytest.fixture
def cluster(cluster_factory) -> Cluster:
    """A fresh, formed 3-node cluster (loopback, --dev, short timings)."""
    return cluster_factory()


@pytest.fixture
def topic(request) -> str:
    """A topic name unique to this test (Kafka allows [a-zA-Z0-9._-])."""
    stem = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:120].strip("-")
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        brokers = {id(v): v for v in getattr(item, "funcargs", {}).values() if isinstance(v, BrokerProcess)}
        for b in brokers.values():
            report.sections.append((f"odradek log {b.log_path}", b.log_tail(80)))
        for c in getattr(item, "_odradek_clusters", []):
            for title, tail in c.log_tails(60):
                report.sections.append((f"odradek cluster {title}", tail))
    return report
