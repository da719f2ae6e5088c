#!/usr/bin/env node
// kafkajs consumer-group runner: node group_runner.js <bootstrap> <topic> <group> <count>
// Subscribes from the beginning, consumes <count> messages (committing), disconnects, prints JSON values.
'use strict';
const path = require('path');
const { Kafka, logLevel } = require(path.join(__dirname, '..', 'kafkajs', 'node_modules', 'kafkajs'));

async function main() {
  const [bootstrap, topic, group, count] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: 'odradek-groups', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 6000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const values = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${values.length} messages`)), 40000);
    consumer.run({
      eachMessage: async ({ message }) => {
        values.push(message.value.toString());
        if (values.length >= Number(count)) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect(); // commits the resolved offsets and leaves
  process.stdout.write(JSON.stringify(values));
}
main().catch((e) => { process.stderr.write(String(e.stack || e)); process.exit(1); });
