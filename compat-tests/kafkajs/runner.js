#!/usr/bin/env node
// kafkajs runner for the odradek compat suite.
//
//   node runner.js <bootstrap host:port> <command> '<json arguments>'
//
// Prints one JSON document (the command's result) on stdout; kafkajs' own
// log lines go to stderr so they never mix with the result. Exits 1 with the
// error on stderr if the command fails. test_kafkajs.py drives it and checks
// the results, reading produced data back with another client, because
// kafkajs consumers need consumer groups, which odradek does not have yet.
'use strict';

const { Kafka, CompressionTypes, Partitioners, logLevel } = require('kafkajs');

const COMMAND_TIMEOUT_MS = 60000;

function stderrLogCreator() {
  return ({ namespace, level, label, log }) => {
    const { message, ...extra } = log;
    process.stderr.write(`[kafkajs ${label} ${namespace}] ${message} ${JSON.stringify(extra)}\n`);
  };
}

function client(bootstrap) {
  return new Kafka({
    clientId: 'odradek-compat-kafkajs',
    brokers: bootstrap.split(','),
    logLevel: logLevel.WARN,
    logCreator: stderrLogCreator,
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 2000 },
  });
}

async function withAdmin(kafka, fn) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

const commands = {
  // { topic, partitions, configs: {name: value} } -> { created }
  'create-topic': (kafka, args) =>
    withAdmin(kafka, async (admin) => ({
      created: await admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic: args.topic,
            numPartitions: args.partitions,
            replicationFactor: 1,
            configEntries: Object.entries(args.configs || {}).map(([name, value]) => ({ name, value })),
          },
        ],
      }),
    })),

  // {} -> { topics: [names] }
  'list-topics': (kafka) => withAdmin(kafka, async (admin) => ({ topics: await admin.listTopics() })),

  // { topic } -> { topics: [{ name, partitions: [{ partitionId, leader, replicas, isr, partitionErrorCode }] }] }
  metadata: (kafka, args) => withAdmin(kafka, (admin) => admin.fetchTopicMetadata({ topics: [args.topic] })),
  // { topic, partition, replicas: [broker ids] | null } -> {} (null cancels an ongoing reassignment)
  reassign: (kafka, args) =>
    withAdmin(kafka, async (admin) => {
      await admin.alterPartitionReassignments({
        topics: [{ topic: args.topic, partitionAssignment: [{ partition: args.partition, replicas: args.replicas }] }],
      });
      return {};
    }),
  // { topic } -> kafkajs' listPartitionReassignments answer for partition 0..n of that topic
  'list-reassignments': (kafka, args) =>
    withAdmin(kafka, (admin) => admin.listPartitionReassignments({ topics: [{ topic: args.topic, partitions: args.partitions }] })),

  // { topic } -> { latest: [{partition, offset, high, low}], earliest: [...] }
  offsets: (kafka, args) =>
    withAdmin(kafka, async (admin) => ({
      latest: await admin.fetchTopicOffsets(args.topic),
      earliest: await admin.fetchTopicOffsetsByTimestamp(args.topic, 0),
    })),

  // { topic, timestamp } -> [{partition, offset}]
  'offsets-by-time': (kafka, args) =>
    withAdmin(kafka, (admin) => admin.fetchTopicOffsetsByTimestamp(args.topic, args.timestamp)),

  // { topic, count } -> { created: true } (kafkajs resolves with nothing; errors throw)
  'create-partitions': (kafka, args) =>
    withAdmin(kafka, async (admin) => {
      await admin.createPartitions({ topicPartitions: [{ topic: args.topic, count: args.count }] });
      return { created: true };
    }),

  // { topic, names: [config names] } -> { configs: {name: value} }
  'describe-configs': (kafka, args) =>
    withAdmin(kafka, async (admin) => {
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: 2 /* TOPIC */, name: args.topic, configNames: args.names }],
      });
      const [resource] = resources;
      if (resource.errorCode !== 0) throw new Error(`describeConfigs errorCode ${resource.errorCode}`);
      return { configs: Object.fromEntries(resource.configEntries.map((e) => [e.configName, e.configValue])) };
    }),

  // { topic, configs: {name: value} } -> { errorCodes: [..] }
  'alter-configs': (kafka, args) =>
    withAdmin(kafka, async (admin) => {
      const { resources } = await admin.alterConfigs({
        validateOnly: false,
        resources: [
          {
            type: 2 /* TOPIC */,
            name: args.topic,
            configEntries: Object.entries(args.configs).map(([name, value]) => ({ name, value })),
          },
        ],
      });
      return { errorCodes: resources.map((r) => r.errorCode) };
    }),

  // { topic } -> { deleted: true }
  'delete-topic': (kafka, args) =>
    withAdmin(kafka, async (admin) => {
      await admin.deleteTopics({ topics: [args.topic], timeout: 15000 });
      return { deleted: true };
    }),

  // { topic, idempotent, acks, compression: "none"|"gzip",
  //   sends: [[{ partition, key, value, headers: {k: v} }, ...], ...] }
  // Each inner list is one producer.send() call (one request per partition).
  // -> { results: [[{ partition, errorCode, baseOffset }, ...] per send] }
  produce: async (kafka, args) => {
    const producer = kafka.producer({
      idempotent: args.idempotent,
      // kafkajs only guarantees idempotence with one request in flight.
      maxInFlightRequests: args.idempotent ? 1 : 5,
      allowAutoTopicCreation: true,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    const compression = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP }[args.compression || 'none'];
    const results = [];
    try {
      for (const messages of args.sends) {
        const metadata = await producer.send({
          topic: args.topic,
          acks: args.acks,
          timeout: 15000,
          compression,
          messages: messages.map((m) => ({
            partition: m.partition,
            key: m.key === null ? null : Buffer.from(m.key),
            value: m.value === null ? null : Buffer.from(m.value),
            headers: m.headers || {},
          })),
        });
        results.push(
          metadata.map((r) => ({ partition: r.partition, errorCode: r.errorCode, baseOffset: r.baseOffset }))
        );
      }
    } finally {
      await producer.disconnect();
    }
    return { results };
  },

  // Transactions (used by compat-tests/transactions/test_txn_kafkajs.py).
  // { topic, transactionalId, offsetsGroup,
  //   transactions: [{ action: "commit"|"abort", messages: [{ partition, key, value }],
  //                    offsets: [{ topic, partition, offset }] (optional: sendOffsets to offsetsGroup) }] }
  // -> { transactions: [{ action, results: [{ partition, errorCode, baseOffset }] }] }
  // One idempotent transactional producer (maxInFlightRequests 1); each entry is
  // producer.transaction(), one send, an optional sendOffsets, then commit or abort.
  transactions: async (kafka, args) => {
    const producer = kafka.producer({
      transactionalId: args.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: args.transactionTimeout || 30000,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect(); // InitProducerId with the transactional id
    const out = [];
    try {
      for (const step of args.transactions) {
        const txn = await producer.transaction();
        try {
          const metadata = await txn.send({
            topic: args.topic,
            acks: -1,
            messages: step.messages.map((m) => ({ partition: m.partition, key: m.key, value: m.value })),
          });
          if (step.offsets) {
            const byTopic = {};
            for (const o of step.offsets) {
              (byTopic[o.topic] = byTopic[o.topic] || []).push({ partition: o.partition, offset: String(o.offset) });
            }
            await txn.sendOffsets({
              consumerGroupId: args.offsetsGroup,
              topics: Object.entries(byTopic).map(([topic, partitions]) => ({ topic, partitions })),
            });
          }
          if (step.action === 'commit') await txn.commit();
          else await txn.abort();
          out.push({
            action: step.action,
            results: metadata.map((r) => ({ partition: r.partition, errorCode: r.errorCode, baseOffset: r.baseOffset })),
          });
        } catch (err) {
          if (txn.isActive()) await txn.abort().catch(() => {});
          throw err;
        }
      }
    } finally {
      await producer.disconnect();
    }
    return { transactions: out };
  },

  // { topic, groupId, readUncommitted, count, settleMs, timeoutMs }
  // -> { messages: [{ partition, offset, key, value }], timedOut }
  // A group consumer subscribed from the beginning: collects messages until it
  // has `count`, then keeps consuming for settleMs (anything extra is reported too).
  consume: async (kafka, args) => {
    const consumer = kafka.consumer({
      groupId: args.groupId,
      readUncommitted: Boolean(args.readUncommitted),
      sessionTimeout: 6000,
      heartbeatInterval: 500,
      maxWaitTimeInMs: 100,
    });
    await consumer.connect();
    const messages = [];
    let timedOut = false;
    try {
      await consumer.subscribe({ topic: args.topic, fromBeginning: true });
      let reached;
      const enough = new Promise((resolve) => { reached = resolve; });
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          messages.push({
            partition,
            offset: message.offset,
            key: message.key === null ? null : message.key.toString(),
            value: message.value === null ? null : message.value.toString(),
          });
          if (messages.length >= args.count) reached();
        },
      });
      let timer;
      const timeout = new Promise((resolve) => {
        timer = setTimeout(() => { timedOut = true; resolve(); }, args.timeoutMs || 30000);
      });
      await Promise.race([enough, timeout]);
      clearTimeout(timer); // a pending timer would keep node running after the result
      if (!timedOut) await new Promise((resolve) => setTimeout(resolve, args.settleMs || 1000));
    } finally {
      await consumer.disconnect();
    }
    return { messages, timedOut };
  },
};

async function main() {
  const [bootstrap, command, rawArgs] = process.argv.slice(2);
  if (!bootstrap || !commands[command]) {
    throw new Error(`usage: runner.js <bootstrap> <${Object.keys(commands).join('|')}> '<json>'`);
  }
  const args = JSON.parse(rawArgs || '{}');
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`${command} timed out after ${COMMAND_TIMEOUT_MS} ms`)), COMMAND_TIMEOUT_MS).unref()
  );
  const result = await Promise.race([commands[command](client(bootstrap), args), timeout]);
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((err) => {
  process.stderr.write(`runner.js failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
