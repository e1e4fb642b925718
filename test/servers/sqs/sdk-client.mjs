// The official AWS SDK (@aws-sdk/client-sqs) as a second client on qrt's test queues.
// Reads one JSON command on stdin, prints one JSON answer on stdout.
//   {"op":"send","endpoint":"http://127.0.0.1:N","queue":"name","messages":[
//      {"body":"text","attributes":{"k":{"DataType":"String","StringValue":"v"}|
//                                  {"DataType":"Binary","BinaryBase64":"AAE="}},
//       "groupId":"g","dedupId":"d"}]}
//   -> {"ids":["..."]}
//   {"op":"receive","endpoint":...,"queue":"name","max":10,"waitSeconds":2,"delete":true}
//   -> {"messages":[{"body":"...","attributes":{...},"system":{...}}]}
// The SDK checks the MD5s SQS reports against what it sent and received, so a wrong checksum
// on either side fails here.
import {
  SQSClient, GetQueueUrlCommand, SendMessageBatchCommand, ReceiveMessageCommand,
  DeleteMessageBatchCommand,
} from "@aws-sdk/client-sqs";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const cmd = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const client = new SQSClient({
  endpoint: cmd.endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
});
const { QueueUrl } = await client.send(new GetQueueUrlCommand({ QueueName: cmd.queue }));

function toSdkAttributes(attrs = {}) {
  const out = {};
  for (const [name, a] of Object.entries(attrs)) {
    out[name] = a.DataType.startsWith("Binary")
      ? { DataType: a.DataType, BinaryValue: Buffer.from(a.BinaryBase64, "base64") }
      : { DataType: a.DataType, StringValue: a.StringValue };
  }
  return out;
}

function fromSdkAttributes(attrs = {}) {
  const out = {};
  for (const [name, a] of Object.entries(attrs)) {
    out[name] = a.DataType.startsWith("Binary")
      ? { DataType: a.DataType, BinaryBase64: Buffer.from(a.BinaryValue).toString("base64") }
      : { DataType: a.DataType, StringValue: a.StringValue };
  }
  return out;
}

if (cmd.op === "send") {
  const ids = [];
  for (let i = 0; i < cmd.messages.length; i += 10) {
    const entries = cmd.messages.slice(i, i + 10).map((m, k) => ({
      Id: String(i + k),
      MessageBody: m.body,
      MessageAttributes: toSdkAttributes(m.attributes),
      ...(m.groupId ? { MessageGroupId: m.groupId } : {}),
      ...(m.dedupId ? { MessageDeduplicationId: m.dedupId } : {}),
    }));
    const r = await client.send(new SendMessageBatchCommand({ QueueUrl, Entries: entries }));
    if (r.Failed && r.Failed.length) throw new Error("send failed: " + JSON.stringify(r.Failed));
    const byId = new Map(r.Successful.map((s) => [s.Id, s.MessageId]));
    for (const e of entries) ids.push(byId.get(e.Id));
  }
  process.stdout.write(JSON.stringify({ ids }));
} else if (cmd.op === "receive") {
  const messages = [];
  const deadline = Date.now() + (cmd.waitSeconds ?? 2) * 1000;
  while (messages.length < cmd.max && Date.now() < deadline) {
    const r = await client.send(new ReceiveMessageCommand({
      QueueUrl,
      MaxNumberOfMessages: Math.min(10, cmd.max - messages.length),
      WaitTimeSeconds: Math.max(1, Math.ceil((deadline - Date.now()) / 1000)),
      MessageAttributeNames: ["All"],
      MessageSystemAttributeNames: ["All"],
    }));
    const batch = r.Messages ?? [];
    for (const m of batch) {
      messages.push({ body: m.Body, attributes: fromSdkAttributes(m.MessageAttributes), system: m.Attributes ?? {} });
    }
    if (cmd.delete && batch.length) {
      await client.send(new DeleteMessageBatchCommand({
        QueueUrl, Entries: batch.map((m, k) => ({ Id: String(k), ReceiptHandle: m.ReceiptHandle })),
      }));
    }
  }
  process.stdout.write(JSON.stringify({ messages }));
} else {
  throw new Error("unknown op " + cmd.op);
}
