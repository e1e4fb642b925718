// The official AWS SDK (@aws-sdk/client-sns, with @aws-sdk/client-sqs) on qrt's test topics.
// Reads one JSON command on stdin, prints one JSON answer on stdout.
//   {"op":"publish","endpoint":"http://127.0.0.1:N","topic":"sns-topic-name","messages":[
//      {"body":"text","attributes":{"k":{"DataType":"String","StringValue":"v"}|
//                                  {"DataType":"Binary","BinaryBase64":"AAE="}}}]}
//   -> {"ids":["..."]}
//   {"op":"inspect","endpoint":...,"topic":"sns-topic-name","queue":"sqs-queue-name"}
//   -> {"topicArn":"...","queueAttributes":{...},"subscriptions":[{"endpoint":"...",
//       "attributes":{...}}]}
// The topic is looked up with CreateTopic, which returns an existing topic's ARN.
import {
  SNSClient, CreateTopicCommand, PublishBatchCommand, ListSubscriptionsByTopicCommand,
  GetSubscriptionAttributesCommand,
} from "@aws-sdk/client-sns";
import { SQSClient, GetQueueUrlCommand, GetQueueAttributesCommand } from "@aws-sdk/client-sqs";

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const cmd = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const config = {
  endpoint: cmd.endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
};
const sns = new SNSClient(config);
const { TopicArn } = await sns.send(new CreateTopicCommand({ Name: cmd.topic }));

function toSdkAttributes(attrs = {}) {
  const out = {};
  for (const [name, a] of Object.entries(attrs)) {
    out[name] = a.DataType.startsWith("Binary")
      ? { DataType: a.DataType, BinaryValue: Buffer.from(a.BinaryBase64, "base64") }
      : { DataType: a.DataType, StringValue: a.StringValue };
  }
  return out;
}

if (cmd.op === "publish") {
  const ids = [];
  for (let i = 0; i < cmd.messages.length; i += 10) {
    const entries = cmd.messages.slice(i, i + 10).map((m, k) => ({
      Id: String(i + k),
      Message: m.body,
      MessageAttributes: toSdkAttributes(m.attributes),
    }));
    const r = await sns.send(new PublishBatchCommand({ TopicArn, PublishBatchRequestEntries: entries }));
    if (r.Failed && r.Failed.length) throw new Error("publish failed: " + JSON.stringify(r.Failed));
    const byId = new Map(r.Successful.map((s) => [s.Id, s.MessageId]));
    for (const e of entries) ids.push(byId.get(e.Id));
  }
  process.stdout.write(JSON.stringify({ ids }));
} else if (cmd.op === "inspect") {
  const sqs = new SQSClient(config);
  const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: cmd.queue }));
  const { Attributes } = await sqs.send(new GetQueueAttributesCommand({
    QueueUrl, AttributeNames: ["All"],
  }));
  const subscriptions = [];
  let NextToken;
  do {
    const page = await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn, NextToken }));
    for (const s of page.Subscriptions ?? []) {
      const a = await sns.send(new GetSubscriptionAttributesCommand({ SubscriptionArn: s.SubscriptionArn }));
      subscriptions.push({ endpoint: s.Endpoint, protocol: s.Protocol, attributes: a.Attributes ?? {} });
    }
    NextToken = page.NextToken;
  } while (NextToken);
  process.stdout.write(JSON.stringify({ topicArn: TopicArn, queueAttributes: Attributes ?? {}, subscriptions }));
} else {
  throw new Error("unknown op " + cmd.op);
}
