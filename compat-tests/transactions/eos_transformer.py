"""A consume-transform-produce worker (confluent-kafka), run as a separate
process by test_txn_exactly_once.py so that it can be killed with SIGKILL.

    python eos_transformer.py BOOTSTRAP IN_TOPIC OUT_TOPIC GROUP TXN_ID EXPECTED
        [--batch N] [--pause S] [--hold-open-after N] [--debug CONTEXTS]

Consumer: group GROUP, isolation.level=read_committed, enable.auto.commit
false, subscribed to IN_TOPIC. Producer: transactional.id TXN_ID. Per batch:
begin_transaction, produce one output record per input record (same key,
value "out:<input value>", output partition = input partition),
send_offsets_to_transaction(consumer.position(assignment),
consumer.consumer_group_metadata()), commit_transaction. On an abortable
error: abort_transaction and rewind the consumer to its committed offsets;
retriable errors are retried; anything else exits with code 3.

Progress goes to stdout, one line each, flushed (the test reads it):
    ready
    committed <sum of committed positions>     after each commit
    aborted <reason>
    holding <records>                          (--hold-open-after) a transaction is open, records flushed
    done <sum of committed positions>          EXPECTED positions committed: exit 0

--hold-open-after N: once N input records are committed, begin one more
transaction, produce and flush its records, print "holding", then wait
forever with the transaction open (the test kills the process there).
"""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

IDLE_EXIT_S = 60.0
# librdkafka 2.16 re-bootstraps at once when every known broker is down (KIP-899): it destroys the broker handles,
# and a send_offsets_to_transaction in progress then never finishes, not even at its timeout (seen with a
# single-node broker killed with -9 and restarted: AddOffsetsToTxn succeeded after the restart, the TxnOffsetCommit
# was never sent). Without re-bootstrap the clients simply reconnect to the same address.
NO_REBOOTSTRAP = {"metadata.recovery.strategy": "none"}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def describe(err: KafkaError) -> str:
    return (
        f"{err.name()}: {err.str()} [fatal={err.fatal()} retriable={err.retriable()} "
        f"abortable={err.txn_requires_abort()}]"
    )


class Abortable(Exception):
    pass


def retrying(what: str, fn, *args):
    """Call a transactional API; retry retriable errors, raise Abortable for
    abortable ones, exit(3) on anything else (fatal)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return fn(*args)
        except KafkaException as e:
            err = e.args[0]
            if err.txn_requires_abort():
                raise Abortable(f"{what}: {describe(err)}") from e
            if err.retriable() and time.monotonic() < deadline:
                say(f"retry {what}: {describe(err)}")
                time.sleep(0.2)
                continue
            say(f"fatal {what}: {describe(err)}")
            sys.exit(3)


def main() -> int:
    # The test sends SIGUSR1 before killing a worker that is stuck: every thread's stack goes to stderr.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    ap = argparse.ArgumentParser()
    for name in ("bootstrap", "in_topic", "out_topic", "group", "txn_id"):
        ap.add_argument(name)
    ap.add_argument("expected", type=int)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--pause", type=float, default=0.0)
    ap.add_argument("--hold-open-after", type=int, default=None)
    ap.add_argument("--debug", default=None, help="librdkafka debug contexts for both clients, e.g. eos,protocol")
    args = ap.parse_args()
    debug = {"debug": args.debug} if args.debug else {}

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 3000,
            "heartbeat.interval.ms": 300,
            "fetch.wait.max.ms": 100,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 500,
            **NO_REBOOTSTRAP,
            **debug,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "transactional.id": args.txn_id,
            "linger.ms": 5,
            "transaction.timeout.ms": 30000,
            "retry.backoff.ms": 50,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 500,
            **NO_REBOOTSTRAP,
            **debug,
        }
    )
    retrying("init_transactions", producer.init_transactions, 30)
    consumer.subscribe([args.in_topic])
    say("ready")

    def rewind() -> None:
        assignment = consumer.assignment()
        if not assignment:
            return
        deadline = time.monotonic() + 60
        while True:
            try:
                committed = consumer.committed(assignment, timeout=10)
                break
            except KafkaException as e:  # the group coordinator may be restarting
                if time.monotonic() > deadline:
                    raise
                say(f"retry committed: {describe(e.args[0])}")
        for tp in committed:
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))

    def abort(reason: str) -> None:
        say(f"aborted {reason}")
        try:
            retrying("abort_transaction", producer.abort_transaction, 30)
        except Abortable as e:  # abort itself never needs an abort; treat as fatal
            say(f"fatal abort_transaction: {e}")
            sys.exit(3)
        rewind()

    last_progress = time.monotonic()
    committed_sum = 0
    hold_after = args.hold_open_after
    while True:
        msgs = consumer.consume(num_messages=args.batch, timeout=0.5)
        records = []
        for m in msgs:
            if m.error() is not None:
                if m.error().fatal():
                    say(f"fatal consumer error: {describe(m.error())}")
                    return 3
                continue  # transport errors while the broker restarts, EOF
            records.append(m)
        if not records:
            if time.monotonic() - last_progress > IDLE_EXIT_S:
                say(f"idle for {IDLE_EXIT_S}s at committed {committed_sum}")
                return 4
            continue
        last_progress = time.monotonic()
        try:
            retrying("begin_transaction", producer.begin_transaction)
            for m in records:
                producer.produce(
                    args.out_topic, key=m.key(), value=b"out:" + m.value(), partition=m.partition()
                )
            if hold_after is not None and committed_sum >= hold_after:
                left = producer.flush(30)
                say(f"holding {len(records)} unflushed={left}")
                while True:
                    time.sleep(1)
            if args.pause:
                time.sleep(args.pause)
            positions = consumer.position(consumer.assignment())
            retrying(
                "send_offsets_to_transaction",
                producer.send_offsets_to_transaction,
                positions,
                consumer.consumer_group_metadata(),
                30,
            )
            retrying("commit_transaction", producer.commit_transaction, 30)
        except Abortable as e:
            abort(str(e))
            continue
        positions = consumer.position(consumer.assignment())
        committed_sum = sum(tp.offset for tp in positions if tp.offset >= 0)
        say(f"committed {committed_sum}")
        if committed_sum >= args.expected and len(positions) > 0:
            # Everything is processed once every partition's committed position is its end.
            say(f"done {committed_sum}")
            consumer.close()
            return 0


if __name__ == "__main__":
    sys.exit(main())
