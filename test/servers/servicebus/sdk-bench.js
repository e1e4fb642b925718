#!/usr/bin/env node
// The official SDK's side of the Service Bus benchmark: sends COUNT messages of SIZE bytes in
// batches, then receives (peek-lock, prefetch 50) and completes them all; prints one JSON line
// with messages/s, and this process's user and system CPU time per message, per phase.
//   node sdk-bench.js PORT QUEUE COUNT SIZE
//   node sdk-bench.js PORT TOPIC COUNT SIZE SUBSCRIPTION...
// With subscriptions, the second argument is a topic (made beforehand, with them, through the peer's admin
// node): the batches go to it through the SDK's topic sender, and every subscription is read in
// turn through its subscription receiver; receive figures are per received message, over all
// subscriptions.
'use strict';

const { ServiceBusClient } = require('@azure/service-bus');

/// Receives (peek-lock, prefetch 50) and completes until `count` arrived or 5 s pass empty.
async function receiveAll(receiver, count) {
  let received = 0;
  while (received < count) {
    const got = await receiver.receiveMessages(Math.min(50, count - received), { maxWaitTimeInMs: 5000 });
    if (!got.length) break;
    await Promise.all(got.map((m) => receiver.completeMessage(m)));
    received += got.length;
  }
  return received;
}

async function main() {
  const [port, entity, countText, sizeText, ...subscriptions] = process.argv.slice(2);
  const count = Number(countText);
  const body = Buffer.alloc(Number(sizeText), 'x');
  const client = new ServiceBusClient(
    `Endpoint=sb://127.0.0.1:${port}/;SharedAccessKeyName=x;SharedAccessKey=y;UseDevelopmentEmulator=true`);
  // The SDK's queue and subscription receivers take their own overloads.
  const receiverOf = (sub, options) =>
    sub === undefined ? client.createReceiver(entity, options) : client.createReceiver(entity, sub, options);
  const readFrom = subscriptions.length ? subscriptions : [undefined];
  const sender = client.createSender(entity);
  await sender.sendMessages({ body: 'warm-up' });
  for (const sub of readFrom) {
    const warm = receiverOf(sub, { receiveMode: 'receiveAndDelete' });
    await warm.receiveMessages(1, { maxWaitTimeInMs: 5000 });
    await warm.close();
  }

  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let sent = 0; sent < count;) {
    const batch = await sender.createMessageBatch();
    while (sent < count && batch.tryAddMessage({ body })) sent++;
    await sender.sendMessages(batch);
  }
  const t1 = process.hrtime.bigint();
  const sendCpu = process.cpuUsage(cpu0);
  const cpu1 = process.cpuUsage();
  const perSubscription = [];
  for (const sub of readFrom) {
    const receiver = receiverOf(sub, { prefetchCount: 50 });
    perSubscription.push(await receiveAll(receiver, count));
    await receiver.close();
  }
  const received = perSubscription.reduce((a, b) => a + b, 0);
  const t2 = process.hrtime.bigint();
  const receiveCpu = process.cpuUsage(cpu1);
  const cpu = process.cpuUsage(cpu0);
  await sender.close();
  await client.close();
  const seconds = (a, b) => Number(b - a) / 1e9;
  const round = (x) => Math.round(x * 100) / 100;
  console.log(JSON.stringify({
    client: '@azure/service-bus', count, size: body.length, received,
    ...(subscriptions.length ? { subscriptions: subscriptions.length, received_per_subscription: perSubscription } : {}),
    send_per_s: Math.round(count / seconds(t0, t1)),
    receive_complete_per_s: Math.round(received / seconds(t1, t2)),
    cpu_us_per_message: round((cpu.user + cpu.system) / (count + received)),
    send_user_us: round(sendCpu.user / count),
    send_system_us: round(sendCpu.system / count),
    receive_user_us: round(receiveCpu.user / received),
    receive_system_us: round(receiveCpu.system / received),
  }));
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
