// The same workload as qrt_sqs_bench, through the official AWS SDK for JavaScript, for a
// side-by-side figure: N messages sent with SendMessageBatch by C concurrent senders, then
// received (10 per call, long poll) and deleted with DeleteMessageBatch by C concurrent
// consumers. Prints one JSON line with throughput and this process's CPU per message (user and system apart).
//   QRT_SQS_SERVERS_DIR=test/servers/sqs node sdk_bench.mjs <endpoint> <queue> <messages> <size> <concurrency>
// The SDK is installed with the test servers (test/servers/sqs/node_modules).
import { createRequire } from "node:module";
const require = createRequire(`${process.env.QRT_SQS_SERVERS_DIR}/package.json`);
const { SQSClient, GetQueueUrlCommand, SendMessageBatchCommand, ReceiveMessageCommand,
  DeleteMessageBatchCommand } = require("@aws-sdk/client-sqs");

const [endpoint, queue, messagesArg, sizeArg, concurrencyArg] = process.argv.slice(2);
const total = Number(messagesArg), size = Number(sizeArg), concurrency = Number(concurrencyArg);
const client = new SQSClient({ endpoint, region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" } });
const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName: queue }));
const body = "x".repeat(size);


let next = 0;
let cpu0 = process.cpuUsage(), t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < total) {
    const start = next; next = Math.min(total, next + 10);
    const entries = [];
    for (let i = start; i < next; i++) entries.push({ Id: String(i - start), MessageBody: body });
    const r = await client.send(new SendMessageBatchCommand({ QueueUrl, Entries: entries }));
    if (r.Failed && r.Failed.length) throw new Error(JSON.stringify(r.Failed));
  }
}));
const sendSeconds = (performance.now() - t0) / 1000, sendCpu = process.cpuUsage(cpu0);

let received = 0;
cpu0 = process.cpuUsage(); t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (received < total) {
    const r = await client.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10,
      WaitTimeSeconds: 1, MessageAttributeNames: ["All"], MessageSystemAttributeNames: ["All"] }));
    const batch = r.Messages ?? [];
    if (!batch.length) continue;
    received += batch.length;
    await client.send(new DeleteMessageBatchCommand({ QueueUrl,
      Entries: batch.map((m, k) => ({ Id: String(k), ReceiptHandle: m.ReceiptHandle })) }));
  }
}));
const recvSeconds = (performance.now() - t0) / 1000, recvCpu = process.cpuUsage(cpu0);
process.stdout.write(JSON.stringify({
  client: "aws-sdk-js", messages: total, received,
  send_msgs_per_s: total / sendSeconds, send_cpu_us_per_msg: (sendCpu.user + sendCpu.system) / total,
  send_user_us_per_msg: sendCpu.user / total, send_system_us_per_msg: sendCpu.system / total,
  recv_msgs_per_s: received / recvSeconds,
  recv_cpu_us_per_msg: (recvCpu.user + recvCpu.system) / received,
  recv_user_us_per_msg: recvCpu.user / received, recv_system_us_per_msg: recvCpu.system / received,
}) + "\n");
