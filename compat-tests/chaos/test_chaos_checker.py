"""Unit tests of the chaos checker on synthetic histories: a clean history
passes, and each kind of violation is caught (so the checker can fail)."""

from __future__ import annotations

import pytest
from chaos_checker import (
    Ack,
    Attempt,
    Failure,
    Window,
    check,
    decode_value,
    encode_value,
    find_minority_acks,
    unavailability,
)


def history(n_producers=2, n=10, partitions=2, t0=100.0, dt=0.1):
    """Every producer writes n records round robin over the partitions; all
    are acked at consecutive offsets, and the log holds exactly them."""
    attempts, acks = [], []
    log: dict[int, list] = {p: [] for p in range(partitions)}
    t = t0
    for seq in range(n):
        for producer in range(n_producers):
            p = seq % partitions
            attempts.append(Attempt(producer, seq, p, t))
            offset = len(log[p])
            log[p].append((offset, encode_value(producer, seq)))
            acks.append(Ack(producer, seq, p, offset, t + 0.01))
            t += dt
    return attempts, acks, log


def test_value_round_trip():
    assert decode_value(encode_value(7, 123456, pad=10)) == (7, 123456)
    assert decode_value(b"something else") is None
    assert decode_value(None) is None


def test_clean_history_passes():
    attempts, acks, log = history()
    r = check(attempts, acks, [], log, producing=(100.0, 102.0))
    assert r.ok, r.format()
    assert r.safety_counts() == {"lost": 0, "duplicated": 0, "reordered": 0, "minority_acks": 0, "phantoms": 0}
    assert (r.produced, r.acknowledged, r.stored, r.unresolved) == (20, 20, 20, 0)


def test_missing_acked_record_is_lost():
    attempts, acks, log = history()
    del log[1][-1]  # the tail of partition 1 is gone (e.g. truncated by a bad election)
    r = check(attempts, acks, [], log)
    assert not r.ok
    assert len(r.lost) == 1
    producer, seq, partition, offset, there = r.lost[0]
    assert partition == 1 and offset == len(log[1]) and "nothing" in there


def test_overwritten_acked_record_is_lost_and_located():
    attempts, acks, log = history()
    # offset 2 of partition 0 now holds another producer's record; the acked one moved to the end
    moved = log[0][2]
    log[0][2] = (2, encode_value(9, 999))
    attempts.append(Attempt(9, 999, 0, 101.0))
    log[0].append((len(log[0]), moved[1]))
    r = check(attempts, acks, [], log)
    assert len(r.lost) == 1 and "chaos:0009:0000000999" in r.lost[0][4]
    assert "the record is at [(0, " in r.lost[0][4]


def test_unacked_record_missing_is_fine():
    attempts, acks, log = history()
    # the last record of producer 1 failed and is not in the log
    last = max((a for a in acks if a.producer == 1), key=lambda a: a.seq)
    acks.remove(last)
    log[last.partition] = [(o, v) for o, v in log[last.partition] if o != last.offset]
    failures = [Failure(1, last.seq, last.partition, 105.0, "Local: Message timed out")]
    r = check(attempts, acks, failures, log)
    assert r.ok, r.format()
    assert r.failed == 1 and r.failure_kinds == {"Local: Message timed out": 1}


def test_duplicate_is_caught():
    attempts, acks, log = history()
    log[0].append((len(log[0]), log[0][0][1]))
    r = check(attempts, acks, [], log)
    assert len(r.duplicated) == 1 and not r.lost
    (key, places) = r.duplicated[0]
    assert places == [(0, 0), (0, len(log[0]) - 1)]


def test_duplicate_across_partitions_is_caught():
    attempts, acks, log = history()
    log[1].append((len(log[1]), log[0][0][1]))
    assert len(check(attempts, acks, [], log).duplicated) == 1


def test_reorder_is_caught():
    attempts, acks, log = history()
    # swap two records of producer 0 in partition 0 (offsets 0 and 2) and their acks
    (o0, v0), (o2, v2) = log[0][0], log[0][2]
    log[0][0], log[0][2] = (o0, v2), (o2, v0)
    acks = [
        Ack(a.producer, a.seq, a.partition, {o0: o2, o2: o0}.get(a.offset, a.offset), a.t_ack)
        if a.partition == 0 and a.offset in (o0, o2)
        else a
        for a in acks
    ]
    r = check(attempts, acks, [], log)
    assert not r.lost and not r.duplicated
    assert len(r.reordered) >= 1
    assert r.reordered[0][:2] == (decode_value(v2)[0], 0)


def test_other_producers_interleaving_is_not_a_reorder():
    log = {0: [(0, encode_value(1, 5)), (1, encode_value(2, 0)), (2, encode_value(1, 6)), (3, encode_value(2, 1))]}
    attempts = [Attempt(1, 5, 0, 0), Attempt(2, 0, 0, 0), Attempt(1, 6, 0, 0), Attempt(2, 1, 0, 0)]
    assert check(attempts, [], [], log).reordered == []


def test_phantom_value_is_caught():
    attempts, acks, log = history()
    log[0].append((len(log[0]), b"garbage"))
    log[1].append((len(log[1]), encode_value(42, 1)))  # well-formed, never produced
    assert len(check(attempts, acks, [], log).phantoms) == 2


def test_ack_inside_minority_window_is_caught_after_grace():
    attempts = [Attempt(0, 0, 0, 10.0), Attempt(0, 1, 0, 10.0), Attempt(0, 2, 0, 10.0)]
    w = Window(start=20.0, end=30.0, what="kill 2,3")
    acks = [
        Ack(0, 0, 0, 0, 20.5),  # within the grace: an ack already on its way
        Ack(0, 1, 0, 1, 25.0),  # under min.insync.replicas: a violation
        Ack(0, 2, 0, 2, 31.0),  # after the window
    ]
    violations, allowed, late = find_minority_acks(attempts, acks, [w], grace_s=1.0)
    assert [(v[0], v[1], v[5]) for v in violations] == [(0, 1, "acked in window")]
    assert allowed == 0 and late == 0


def test_record_produced_in_window_and_given_up_must_not_be_acked():
    w = Window(start=20.0, end=40.0)
    attempts = [
        Attempt(0, 0, 0, 22.0, give_up_by=30.0),  # its client gave up before the window closed
        Attempt(0, 1, 0, 35.0, give_up_by=43.0),  # still retried after the window: may be acked then
        Attempt(0, 2, 0, 20.2, give_up_by=28.2),  # produced within the grace
        Attempt(0, 3, 0, 23.0),  # retried for ever (a long message.timeout.ms)
    ]
    acks = [Ack(0, 0, 0, 0, 41.0), Ack(0, 1, 0, 1, 41.0), Ack(0, 2, 0, 2, 41.0), Ack(0, 3, 0, 3, 42.0)]
    violations, allowed, _ = find_minority_acks(attempts, acks, [w], grace_s=1.0)
    assert [(v[1], v[5]) for v in violations] == [(0, "produced in window, given up before it closed")]
    assert allowed == 2
    log = {0: [(i, encode_value(0, i)) for i in range(4)]}
    r = check(attempts, acks, [], log, windows=[w], grace_s=1.0)
    assert r.safety_counts()["minority_acks"] == 1 and not r.ok


def test_failures_in_window_are_what_we_want():
    w = Window(start=20.0, end=40.0)
    attempts = [Attempt(0, s, 0, 21.0 + s, give_up_by=29.0 + s) for s in range(5)]
    failures = [Failure(0, s, 0, 30.0 + s, "Broker: Not enough in-sync replicas") for s in range(5)]
    r = check(attempts, [], failures, {0: []}, windows=[w])
    assert r.ok and r.failed == 5


@pytest.mark.parametrize(
    "acks,expected",
    [
        ([], (10.0, (0.0, 10.0))),
        ([1.0, 2.0, 7.5, 8.0], (5.5, (2.0, 7.5))),
        ([0.5, 9.0], (8.5, (0.5, 9.0))),
        ([1.0, 2.0], (8.0, (2.0, 10.0))),  # the end counts: nothing acked after t=2
    ],
)
def test_unavailability(acks, expected):
    longest, at, gaps = unavailability(acks, 0.0, 10.0)
    assert (round(longest, 6), at) == expected
    assert gaps[0][0] == longest


def test_report_format_mentions_violations():
    attempts, acks, log = history()
    del log[0][0]
    r = check(attempts, acks, [], log, producing=(100.0, 103.0))
    text = r.format(t0=100.0)
    assert "VIOLATED" in text and "lost (first" in text


def test_ack_without_offset_is_checked_by_presence():
    attempts, acks, log = history()
    first = acks[0]
    acks[0] = Ack(first.producer, first.seq, first.partition, None, first.t_ack)
    r = check(attempts, acks, [], log)
    assert r.ok and r.acks_without_offset == 1, r.format()
    # ... and it is lost if it is not in its partition
    log[first.partition] = [(o, v) for o, v in log[first.partition] if o != first.offset]
    r = check(attempts, acks, [], log)
    assert len(r.lost) == 1 and "without an offset" in r.lost[0][4]


def test_late_ack_of_a_record_committed_before_the_window_is_allowed():
    """A retry of a batch committed before two brokers died may be answered
    (as a duplicate, with its original offset) while only one is alive."""
    w = Window(start=20.0, end=30.0)
    attempts = [Attempt(0, 0, 0, 10.0), Attempt(1, 0, 0, 10.0), Attempt(0, 1, 0, 19.0), Attempt(2, 0, 0, 10.0)]
    acks = [
        Ack(1, 0, 0, 1, 12.0),  # offset 1 acked before the window: offsets 0..1 were committed then
        Ack(0, 0, 0, 0, 25.0),  # late ack of offset 0: allowed
        Ack(0, 1, 0, 2, 25.0),  # offset 2 was not known committed: a violation
        Ack(2, 0, 0, None, 26.0),  # without an offset, stored at offset 1... no: see the log below
    ]
    log = {0: [(0, encode_value(0, 0)), (1, encode_value(1, 0)), (2, encode_value(0, 1)), (3, encode_value(2, 0))]}
    violations, allowed, late = find_minority_acks(attempts, acks, [w], grace_s=1.0, log=log)
    assert sorted((v[0], v[1]) for v in violations) == [(0, 1), (2, 0)]
    assert late == 1
    log[0][3], log[0][0] = (3, encode_value(0, 0)), (0, encode_value(2, 0))
    acks[1] = Ack(0, 0, 0, 3, 25.0)
    violations, allowed, late = find_minority_acks(attempts, acks, [w], grace_s=1.0, log=log)
    assert sorted((v[0], v[1]) for v in violations) == [(0, 0), (0, 1)]  # (2, 0) now sits at offset 0: committed
    assert late == 1


# --------------------------------------------------------------------------
# The transactional checker
# --------------------------------------------------------------------------
from chaos_checker import (  # noqa: E402
    ABORTED,
    COMMITTED,
    UNKNOWN,
    Txn,
    TxnAck,
    check_transactions,
    decode_txn_value,
    encode_txn_value,
)


def txn_history(outcomes=(COMMITTED, ABORTED, COMMITTED, UNKNOWN, COMMITTED), producers=2, partitions=3, size=3,
                unknown_visible=True):
    """Each producer runs one transaction per outcome, `size` records round
    robin over the partitions; producers take turns. The read_uncommitted log
    holds every record plus one marker offset per (transaction, partition);
    the read_committed log the committed ones (and the unknown ones if
    unknown_visible). Returns (txns, acks, committed_log, uncommitted_log, ends)."""
    txns, acks = [], []
    committed: dict[int, list] = {p: [] for p in range(partitions)}
    uncommitted: dict[int, list] = {p: [] for p in range(partitions)}
    next_offset = dict.fromkeys(range(partitions), 0)
    t = 100.0
    for n, outcome in enumerate(outcomes):
        for producer in range(producers):
            parts = tuple((n + producer + i) % partitions for i in range(size))
            txn = Txn(producer, n, parts, outcome, t_begin=t, t_end=t + 0.5, t_commit_called=t + 0.3)
            txns.append(txn)
            visible = outcome == COMMITTED or (outcome == UNKNOWN and unknown_visible)
            for i, p in enumerate(parts):
                off = next_offset[p]
                next_offset[p] += 1
                v = encode_txn_value(producer, n, i, pad=3)
                uncommitted[p].append((off, v))
                if visible:
                    committed[p].append((off, v))
                acks.append(TxnAck(producer, n, i, p, off, t + 0.1))
            for p in set(parts):
                next_offset[p] += 1  # the marker
            t += 1.0
    ends = {p: (next_offset[p], next_offset[p]) for p in range(partitions)}
    return txns, acks, committed, uncommitted, ends


def test_txn_value_round_trip():
    assert decode_txn_value(encode_txn_value(3, 1234, 7, pad=20)) == (3, 1234, 7)
    assert decode_txn_value(encode_value(3, 1234)) is None
    assert decode_txn_value(None) is None


def test_clean_transactional_history_passes():
    txns, acks, committed, uncommitted, ends = txn_history()
    r = check_transactions(txns, acks, committed, uncommitted, ends, producing=(100.0, 110.0))
    assert r.ok, r.format()
    assert r.transactions == {COMMITTED: 6, ABORTED: 2, UNKNOWN: 2}
    assert r.unknown_resolved == {"all visible": 2}
    assert r.records_sent == 30 and r.records_checked == 24 and r.records_uncommitted == 30
    assert "safety: lost_committed 0" in r.format()
    # unknown transactions may just as well have been aborted
    txns, acks, committed, uncommitted, ends = txn_history(unknown_visible=False)
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert r.ok, r.format()
    assert r.unknown_resolved == {"none visible": 2}


def drop(log, producer, txn, index):
    for p in log:
        log[p] = [(o, v) for o, v in log[p] if decode_txn_value(v) != (producer, txn, index)]


def test_lost_committed_record_is_caught_and_makes_the_transaction_partial():
    txns, acks, committed, uncommitted, ends = txn_history()
    drop(committed, 1, 2, 1)
    drop(uncommitted, 1, 2, 1)
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert [x[:4] for x in r.lost_committed] == [(1, 2, 1, txns[5].partitions[1])]
    assert "nothing" in r.lost_committed[0][5]
    assert [x[:5] for x in r.partial] == [(1, 2, COMMITTED, 2, 3)]
    assert not r.ok


def test_committed_record_at_another_offset_is_lost_and_located():
    txns, acks, committed, uncommitted, ends = txn_history()
    a = next(a for a in acks if (a.producer, a.txn, a.index) == (0, 0, 0))
    acks[acks.index(a)] = TxnAck(a.producer, a.txn, a.index, a.partition, a.offset + 100, a.t_ack)
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert len(r.lost_committed) == 1 and "the record is at [(0, 0)]" in r.lost_committed[0][5]


def test_visible_aborted_record_is_caught():
    txns, acks, committed, uncommitted, ends = txn_history()
    aborted = next(t for t in txns if t.outcome == ABORTED)
    p = aborted.partitions[0]
    v = encode_txn_value(aborted.producer, aborted.txn, 0, pad=3)
    off = next(o for o, val in uncommitted[p] if val == v)
    committed[p] = sorted(committed[p] + [(off, v)])
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert [x[:5] for x in r.visible_aborted] == [(aborted.producer, aborted.txn, 0, p, off)]
    assert not r.ok and r.safety_counts()["visible_aborted"] == 1


def test_partial_unknown_transaction_is_caught():
    txns, acks, committed, uncommitted, ends = txn_history()
    unknown = next(t for t in txns if t.outcome == UNKNOWN)
    drop(committed, unknown.producer, unknown.txn, 2)
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert [x[:5] for x in r.partial] == [(unknown.producer, unknown.txn, UNKNOWN, 2, 3)]
    assert not r.lost_committed  # an unknown transaction's records are not "committed"


def test_duplicate_in_either_log_is_caught():
    txns, acks, committed, uncommitted, ends = txn_history()
    v = committed[0][0][1]
    committed[0].append((10_000, v))
    uncommitted[0].append((10_000, v))
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert sorted(d[1] for d in r.duplicates) == ["read_committed", "read_uncommitted"]


def test_reordered_transactions_are_caught():
    txns, acks, committed, uncommitted, ends = txn_history()
    # producer 0's records in partition 0, read_committed: swap the values of its first two
    mine = [i for i, (o, v) in enumerate(committed[0]) if decode_txn_value(v)[0] == 0]
    i, j = mine[0], mine[1]
    (oi, vi), (oj, vj) = committed[0][i], committed[0][j]
    committed[0][i], committed[0][j] = (oi, vj), (oj, vi)
    for log in (uncommitted,):
        log[0] = [(o, {vi: vj, vj: vi}.get(v, v)) for o, v in log[0]]
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert r.reordered and r.reordered[0][:2] == (0, 0)


def test_interleaved_producers_are_not_a_reorder():
    txns = [Txn(0, 0, (0, 0)), Txn(1, 0, (0,)), Txn(0, 1, (0,))]
    for t in txns:
        t.outcome = COMMITTED
    log = {0: [(0, encode_txn_value(0, 0, 0)), (1, encode_txn_value(1, 0, 0)), (2, encode_txn_value(0, 0, 1)),
               (4, encode_txn_value(0, 1, 0))]}
    r = check_transactions(txns, [], log, dict(log), {0: (6, 6)})
    assert r.ok, r.format()


def test_phantoms_are_caught():
    txns, acks, committed, uncommitted, ends = txn_history()
    committed[0].append((5000, b"garbage"))
    uncommitted[0].append((5000, b"garbage"))
    uncommitted[1].append((5001, encode_txn_value(7, 0, 0)))  # no such transaction
    t = txns[0]
    wrong = (t.partitions[0] + 1) % 3
    uncommitted[wrong].append((5002, encode_txn_value(t.producer, t.txn, 0)))  # sent elsewhere (and a duplicate)
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    whys = sorted((x[0], x[4]) for x in r.phantoms)
    assert whys == [
        ("read_committed", "not a value of this workload"),
        ("read_uncommitted", "no such transaction"),
        ("read_uncommitted", "not a value of this workload"),
        ("read_uncommitted", f"sent to partition {t.partitions[0]}"),
    ]


def test_read_committed_must_agree_with_read_uncommitted():
    txns, acks, committed, uncommitted, ends = txn_history()
    uncommitted[1] = uncommitted[1][1:]
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert len(r.inconsistent) == 1 and r.inconsistent[0][0] == 1


def test_hanging_transaction_is_caught_and_named():
    txns, acks, committed, uncommitted, ends = txn_history()
    # producer 1's last transaction never ended: its records are beyond the LSO
    last = txns[-1]
    for i, p in enumerate(last.partitions):
        drop(committed, last.producer, last.txn, i)
    last.outcome = UNKNOWN
    last.how = "commit timed out; producer recreated"
    first_p = last.partitions[0]
    first_off = next(o for o, v in uncommitted[first_p] if decode_txn_value(v) == (last.producer, last.txn, 0))
    ends[first_p] = (first_off, ends[first_p][1])
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert [h[:3] for h in r.hanging] == [(first_p, first_off, ends[first_p][1])]
    assert "the client saw unknown (commit timed out; producer recreated)" in r.hanging[0][3]
    assert "hanging 1" in r.format()


def test_lost_committed_beyond_a_hanging_lso_is_labelled():
    txns, acks, committed, uncommitted, ends = txn_history()
    last = txns[-1]
    p = last.partitions[0]
    off = next(o for o, v in uncommitted[p] if decode_txn_value(v) == (last.producer, last.txn, 0))
    committed[p] = [(o, v) for o, v in committed[p] if o < off]
    ends[p] = (off, ends[p][1])
    r = check_transactions(txns, acks, committed, uncommitted, ends)
    assert r.hanging and r.lost_committed
    assert "beyond the last stable offset" in r.lost_committed[0][5]


def test_commit_availability():
    txns, acks, committed, uncommitted, ends = txn_history()
    for t in txns:
        t.t_end = t.t_begin + 0.5
    txns[4].t_commit_called, txns[4].t_end = 104.0, 108.0  # a commit that took 4 s
    r = check_transactions(txns, acks, committed, uncommitted, ends, producing=(100.0, 112.0))
    assert r.longest_commit_call_s == pytest.approx(4.0)
    assert r.longest_commit_call_of[:2] == (txns[4].producer, txns[4].txn)
    assert r.longest_commit_gap_s > 0
