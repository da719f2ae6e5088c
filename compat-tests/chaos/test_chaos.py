"""Short chaos run (part of scripts/test): every fault kind once, in an
order seeded by CHAOS_SEED (default 1), against a 3-node cluster in network
namespaces (isolation falls back to SIGSTOP without them), checked by
chaos_checker. The long form is scripts/chaos.

Safety (lost, duplicated, reordered, acks under min.insync.replicas,
phantoms) must be exactly zero. Liveness is checked loosely: the cluster
heals (ISR 3 everywhere) and serves acks again after the last fault."""

from __future__ import annotations

import os

import pytest
from chaos_run import ChaosConfig, run_chaos

pytestmark = pytest.mark.needs_cluster

SHORT = dict(
    duration_s=None,  # every kind once
    partitions=4,
    producers=3,
    rate_per_producer=60.0,
    down_s=(2.0, 3.0),
    quiet_s=0.5,
    warmup_s=1.5,
    settle_timeout_s=20.0,
    fault_budget_s=100.0,  # a healthy run needs ~60 s; a cluster that does not heal must not hang the suite
    read_timeout_s=20.0,
)


@pytest.mark.timeout(240)
def test_short_chaos(cluster_factory, tmp_path):
    seed = int(os.environ.get("CHAOS_SEED", "1"))
    cfg = ChaosConfig(seed=seed, client_debug=os.environ.get("CHAOS_CLIENT_DEBUG", ""), **SHORT)
    cluster = cluster_factory(network="auto")
    lines: list[str] = []

    def say(line: str) -> None:  # printed as it happens: pytest shows it on a failure, even a timeout
        lines.append(line)
        print(line, flush=True)

    result = run_chaos(cfg, tmp_path, say=say, cluster=cluster)
    text = "\n".join(lines) + "\n\n" + result.format()
    (tmp_path / "chaos-report.txt").write_text(text)
    print(result.format())
    assert result.report.ok, f"safety violated (seed {seed}):\n{text}"
    assert result.report.acknowledged > 0, text
    assert result.recovered, f"the cluster did not heal after the faults:\n{text}"
    assert result.acks_after_faults > 0, f"no acknowledgement after the last fault healed:\n{text}"
    assert result.probes_produced > 0, f"no probe was produced while two brokers were dead:\n{text}"
