// The same workload as qrt_sns_bench, through the official AWS SDK for JavaScript: N messages
// published with PublishBatch (10 per call) by C concurrent publishers to an existing topic.
// Prints one JSON line with throughput and this process's CPU per message (user and system
// apart).
//   QRT_SQS_SERVERS_DIR=test/servers/sqs node sns_sdk_bench.mjs <endpoint> <sns-topic> <messages> <size> <concurrency>
// The SDK is installed with the test servers (test/servers/sqs/node_modules).
import { createRequire } from "node:module";
const require = createRequire(`${process.env.QRT_SQS_SERVERS_DIR}/package.json`);
const { SNSClient, CreateTopicCommand, PublishBatchCommand } = require("@aws-sdk/client-sns");

const [endpoint, topic, messagesArg, sizeArg, concurrencyArg] = process.argv.slice(2);
const total = Number(messagesArg), size = Number(sizeArg), concurrency = Number(concurrencyArg);
const client = new SNSClient({ endpoint, region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" } });
// CreateTopic answers an existing topic's ARN.
const { TopicArn } = await client.send(new CreateTopicCommand({ Name: topic }));
const body = "x".repeat(size);

let next = 0;
const cpu0 = process.cpuUsage(), t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < total) {
    const start = next; next = Math.min(total, next + 10);
    const entries = [];
    for (let i = start; i < next; i++) entries.push({ Id: String(i - start), Message: body });
    const r = await client.send(new PublishBatchCommand({ TopicArn, PublishBatchRequestEntries: entries }));
    if (r.Failed && r.Failed.length) throw new Error(JSON.stringify(r.Failed));
  }
}));
const seconds = (performance.now() - t0) / 1000, cpu = process.cpuUsage(cpu0);
process.stdout.write(JSON.stringify({
  client: "aws-sdk-js", messages: total,
  publish_msgs_per_s: total / seconds, publish_cpu_us_per_msg: (cpu.user + cpu.system) / total,
  publish_user_us_per_msg: cpu.user / total, publish_system_us_per_msg: cpu.system / total,
}) + "\n");
