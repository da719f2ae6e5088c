"""Short chaos runs (part of scripts/test), against a 3-node cluster in
network namespaces (isolation falls back to SIGSTOP without them), checked by
chaos_checker. The long forms are scripts/chaos [--transactions].

test_short_chaos: idempotent producers, every fault kind once, in an order
seeded by CHAOS_SEED (default 1). Safety (lost, duplicated, reordered, acks
under min.insync.replicas, phantoms) must be exactly zero. Liveness is
checked loosely: the cluster heals (ISR 3 everywhere) and serves acks again
after the last fault.

test_transactional_chaos_short: transactional producers (chaos_run.TxnWorker)
through a kill -9 of a transaction coordinator's node, a kill -9 of a
partition leader, an isolation and a kill -9 of two nodes at once, in an
order seeded by CHAOS_SEED (~37 s, ~11 s of it waiting for the coordinator
to time out the transaction producer 0 leaves open at the end).
read_committed must show every committed transaction's records exactly once,
in order, no aborted one and each unknown one all or nothing; at the end every
partition's LSO must reach its high watermark."""

from __future__ import annotations

import os

import pytest
from chaos_run import TXN_BROKER_PROPS, ChaosConfig, run_chaos

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


TXN_SHORT = dict(
    transactions=True,
    kinds=("kill_coordinator", "kill_leader", "isolate", "kill_two"),
    duration_s=None,  # every kind once
    partitions=4,
    txn_producers=2,
    down_s=(2.0, 3.0),
    quiet_s=0.5,
    warmup_s=2.0,
    settle_timeout_s=20.0,
    fault_budget_s=60.0,
    read_timeout_s=20.0,
    broker_props=TXN_BROKER_PROPS,
)


@pytest.mark.timeout(240)
def test_transactional_chaos_short(cluster_factory, tmp_path):
    seed = int(os.environ.get("CHAOS_SEED", "1"))
    cfg = ChaosConfig(seed=seed, client_debug=os.environ.get("CHAOS_CLIENT_DEBUG", ""), **TXN_SHORT)
    cluster = cluster_factory(props=TXN_BROKER_PROPS, network="auto")
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    result = run_chaos(cfg, tmp_path, say=say, cluster=cluster)
    text = "\n".join(lines) + "\n\n" + result.format()
    (tmp_path / "chaos-report.txt").write_text(text)
    print(result.format())
    r = result.report
    assert r.ok, f"transactional safety violated (seed {seed}; history in {tmp_path / 'history.json'}):\n{text}"
    assert r.transactions.get("committed", 0) > 0 and r.transactions.get("aborted", 0) > 0, text
    assert any("fault kill_coordinator: transactional.id" in e for _, e in result.events), text
    assert not any("no live coordinator" in n for n in result.notes), text
    assert result.recovered, f"the cluster did not heal after the faults:\n{text}"
    assert result.acks_after_faults > 0, f"no commit after the last fault healed:\n{text}"
    assert result.lso_wait_s is not None, f"a transaction was left hanging:\n{text}"
