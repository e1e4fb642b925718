#!/usr/bin/env node
// The official SDK on one side of an interop test, qrt on the other.
//   node sdk-interop.js send PORT QUEUE JSON        sends the messages described by JSON
//   node sdk-interop.js receive PORT QUEUE COUNT [SESSION]
//        receives COUNT messages (peek-lock, completes each; from SESSION when given) and prints
//        them as one JSON array on stdout. QUEUE may be a subscription, "<topic>/Subscriptions/<name>"
//        (received through the SDK's subscription receiver); `send` takes a topic as well.
//   node sdk-interop.js rules PORT TOPIC SUBSCRIPTION JSON
//        runs the SDK's rule manager: JSON is a list of {op: "create", name, subject,
//        applicationProperties} (a correlation filter), {op: "delete", name} or {op: "list"};
//        prints one JSON array with an entry per op (the rules, as [{name, subject,
//        applicationProperties, sqlExpression}], for "list"; null otherwise).
// A message in JSON: {bodyBase64, messageId, correlationId, contentType, subject, sessionId,
// applicationProperties, timeToLive} (bodyFill: {byte, count} instead of bodyBase64 for a body
// too large for a command line), or {zeroWidthArrayBomb: {arrays, nulls}} (see bomb()).
'use strict';

const { ServiceBusClient } = require('@azure/service-bus');
const { types } = require('rhea');

// A hostile but well-formed message: an amqp-value body holding a list of `arrays` arrays of
// `nulls` nulls each. A null takes no bytes inside an array, so each array is 10 bytes however
// many it claims; rendered as text, each null is 6 bytes.
function bomb({ arrays, nulls }) {
  const one = types.wrap_array(new Array(nulls).fill(null), 0x40);
  return { body: types.List32(new Array(arrays).fill(one)), bodyType: 'value' };
}

async function main() {
  const [mode, port, queue, arg, session] = process.argv.slice(2);
  const client = new ServiceBusClient(
    `Endpoint=sb://127.0.0.1:${port}/;SharedAccessKeyName=x;SharedAccessKey=y;UseDevelopmentEmulator=true`,
    { retryOptions: { maxRetries: 0, timeoutInMs: 10000 } });
  try {
    if (mode === 'send') {
      const sender = client.createSender(queue);
      const messages = JSON.parse(arg).map((m) => (m.zeroWidthArrayBomb ? bomb(m.zeroWidthArrayBomb) : {
        body: m.bodyFill ? Buffer.alloc(m.bodyFill.count, m.bodyFill.byte) : Buffer.from(m.bodyBase64 || '', 'base64'),
        messageId: m.messageId, correlationId: m.correlationId, contentType: m.contentType,
        subject: m.subject, sessionId: m.sessionId, applicationProperties: m.applicationProperties,
        timeToLive: m.timeToLive,
      }));
      await sender.sendMessages(messages);
      await sender.close();
    } else if (mode === 'receive') {
      const count = Number(arg);
      // A subscription goes through the SDK's (topic, subscription) overloads.
      const at = queue.indexOf('/Subscriptions/');
      const entity = at < 0 ? [queue] : [queue.slice(0, at), queue.slice(at + '/Subscriptions/'.length)];
      const receiver = session ? await client.acceptSession(...entity, session) : client.createReceiver(...entity);
      const got = [];
      const deadline = Date.now() + 15000;
      while (got.length < count && Date.now() < deadline) {
        for (const m of await receiver.receiveMessages(count - got.length, { maxWaitTimeInMs: 2000 })) {
          got.push(m);
          await receiver.completeMessage(m);
        }
      }
      await receiver.close();
      const body = (b) => (Buffer.isBuffer(b) ? b : Buffer.from(typeof b === 'string' ? b : JSON.stringify(b)));
      process.stdout.write(JSON.stringify(got.map((m) => ({
        bodyBase64: body(m.body).toString('base64'), messageId: m.messageId, correlationId: m.correlationId,
        contentType: m.contentType, subject: m.subject, sessionId: m.sessionId,
        applicationProperties: m.applicationProperties || {}, timeToLive: m.timeToLive,
        deliveryCount: m.deliveryCount, sequenceNumber: m.sequenceNumber.toNumber(),
      }))) + '\n');
    } else if (mode === 'rules') {
      const manager = client.createRuleManager(queue, arg);
      const out = [];
      for (const step of JSON.parse(session)) {
        if (step.op === 'create') {
          await manager.createRule(step.name, { subject: step.subject, applicationProperties: step.applicationProperties });
          out.push(null);
        } else if (step.op === 'delete') {
          await manager.deleteRule(step.name);
          out.push(null);
        } else if (step.op === 'list') {
          const rules = [];
          for await (const rule of manager.listRules()) {
            rules.push({ name: rule.name, subject: rule.filter.subject, sqlExpression: rule.filter.sqlExpression,
              applicationProperties: rule.filter.applicationProperties });
          }
          out.push(rules);
        } else {
          throw new Error(`unknown rule op '${step.op}'`);
        }
      }
      process.stdout.write(JSON.stringify(out) + '\n');
    } else {
      throw new Error(`unknown mode '${mode}'`);
    }
  } finally {
    await client.close();
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e && e.stack);
  process.exit(1);
});
