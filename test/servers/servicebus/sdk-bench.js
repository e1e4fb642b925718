#!/usr/bin/env node
// The official SDK's side of the Service Bus benchmark: sends COUNT messages of SIZE bytes in
// batches, then receives (peek-lock, prefetch 50) and completes them all; prints one JSON line
// with messages/s, and this process's user and system CPU time per message, per phase.
//   node sdk-bench.js PORT QUEUE COUNT SIZE
'use strict';

const { ServiceBusClient } = require('@azure/service-bus');

async function main() {
  const [port, queue, countText, sizeText] = process.argv.slice(2);
  const count = Number(countText);
  const body = Buffer.alloc(Number(sizeText), 'x');
  const client = new ServiceBusClient(
    `Endpoint=sb://127.0.0.1:${port}/;SharedAccessKeyName=x;SharedAccessKey=y;UseDevelopmentEmulator=true`);
  const sender = client.createSender(queue);
  await sender.sendMessages({ body: 'warm-up' });
  const warm = client.createReceiver(queue, { receiveMode: 'receiveAndDelete' });
  await warm.receiveMessages(1, { maxWaitTimeInMs: 5000 });
  await warm.close();

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
  const receiver = client.createReceiver(queue, { prefetchCount: 50 });
  let received = 0;
  while (received < count) {
    const got = await receiver.receiveMessages(Math.min(50, count - received), { maxWaitTimeInMs: 5000 });
    if (!got.length) break;
    await Promise.all(got.map((m) => receiver.completeMessage(m)));
    received += got.length;
  }
  const t2 = process.hrtime.bigint();
  const receiveCpu = process.cpuUsage(cpu1);
  const cpu = process.cpuUsage(cpu0);
  await receiver.close();
  await sender.close();
  await client.close();
  const seconds = (a, b) => Number(b - a) / 1e9;
  console.log(JSON.stringify({
    client: '@azure/service-bus', count, size: body.length, received,
    send_per_s: Math.round(count / seconds(t0, t1)),
    receive_complete_per_s: Math.round(received / seconds(t1, t2)),
    cpu_us_per_message: Math.round((cpu.user + cpu.system) / (count + received) * 100) / 100,
    send_user_us: Math.round(sendCpu.user / count * 100) / 100,
    send_system_us: Math.round(sendCpu.system / count * 100) / 100,
    receive_user_us: Math.round(receiveCpu.user / received * 100) / 100,
    receive_system_us: Math.round(receiveCpu.system / received * 100) / 100,
  }));
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
