#!/usr/bin/env node
// Checks the Service Bus test peer with Microsoft's own client, @azure/service-bus: if the
// official SDK works against the peer for every operation qrt relies on, the peer speaks
// Service Bus faithfully enough to test qrt against.
//
// Starts its own peer (port picked by the OS, SAS signatures verified with key "y") unless
// SB_PEER_PORT names a running one. Prints one line per check and "N passed, M failed".
'use strict';

const assert = require('assert/strict');
const path = require('path');
const { spawn } = require('child_process');
const readline = require('readline');
const { ServiceBusClient } = require('@azure/service-bus');

const STEP_TIMEOUT_MS = 20000;
let connectionString = '';
let peerPort = 0;

function startPeer(extraArgs = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'peer.js'), '--quiet', '--sas-key-name', 'x',
      '--sas-key', 'y', '--max-delivery-count', '3', '--lock-duration-ms', '3000', '--session-queues', 'orders-sessions',
      '--dead-letter-on-expiration-queues', 'orders-expiring',
      ...extraArgs],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    const timer = setTimeout(() => reject(new Error('peer did not start within 10 s')), 10000);
    child.on('exit', (code) => reject(new Error(`peer exited with ${code}`)));
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolve({ port: JSON.parse(line).port, child });
    });
  });
}

let unique = 0;
const queueName = (what) => `check-${what}-${process.pid}-${++unique}`;

function withTimeout(promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out`)), STEP_TIMEOUT_MS); }),
  ]).finally(() => clearTimeout(timer));
}

async function receiveExactly(receiver, n) {
  const got = [];
  const deadline = Date.now() + 10000;
  while (got.length < n && Date.now() < deadline) {
    got.push(...(await receiver.receiveMessages(n - got.length, { maxWaitTimeInMs: 2000 })));
  }
  assert.equal(got.length, n, `expected ${n} messages, got ${got.length}`);
  return got;
}

const checks = [];
const check = (name, fn) => checks.push({ name, fn });

check('send and receive-and-complete keep body and properties', async (client) => {
  const q = queueName('basic');
  const sender = client.createSender(q);
  await sender.sendMessages({
    body: Buffer.from([0, 1, 2, 255]), messageId: 'm-1', correlationId: 'corr-7', contentType: 'application/octet-stream',
    subject: 'greeting', applicationProperties: { region: 'eu', attempt: 3 }, timeToLive: 60000,
  });
  const receiver = client.createReceiver(q);
  const [m] = await receiveExactly(receiver, 1);
  assert.deepEqual(Buffer.from(m.body), Buffer.from([0, 1, 2, 255]));
  assert.equal(m.messageId, 'm-1');
  assert.equal(m.correlationId, 'corr-7');
  assert.equal(m.contentType, 'application/octet-stream');
  assert.equal(m.subject, 'greeting');
  assert.deepEqual(m.applicationProperties, { region: 'eu', attempt: 3 });
  assert.equal(m.deliveryCount, 0);
  assert.match(m.lockToken, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.ok(m.sequenceNumber.toNumber() >= 1);
  assert.ok(m.enqueuedTimeUtc instanceof Date && Math.abs(m.enqueuedTimeUtc - Date.now()) < 60000);
  assert.ok(m.lockedUntilUtc > new Date());
  await receiver.completeMessage(m);
  assert.equal((await receiver.receiveMessages(1, { maxWaitTimeInMs: 300 })).length, 0, 'completed message came back');
  await receiver.close();
  await sender.close();
});

check('batch send delivers every message in order', async (client) => {
  const q = queueName('batch');
  const sender = client.createSender(q);
  const batch = await sender.createMessageBatch();
  assert.equal(batch.maxSizeInBytes, 262144, 'link max-message-size not honoured');
  for (let i = 0; i < 5; i++) assert.ok(batch.tryAddMessage({ body: `item-${i}`, applicationProperties: { i } }));
  await sender.sendMessages(batch);
  await sender.sendMessages([{ body: 'array-0' }, { body: 'array-1' }]);
  const receiver = client.createReceiver(q, { receiveMode: 'receiveAndDelete' });
  const got = await receiveExactly(receiver, 7);
  assert.deepEqual(got.map((m) => m.body), ['item-0', 'item-1', 'item-2', 'item-3', 'item-4', 'array-0', 'array-1']);
  assert.deepEqual(got.slice(0, 5).map((m) => m.applicationProperties.i), [0, 1, 2, 3, 4]);
  const seq = got.map((m) => m.sequenceNumber.toNumber());
  assert.deepEqual([...seq].sort((a, b) => a - b), seq, 'sequence numbers not increasing');
  await receiver.close();
  await sender.close();
});

check('abandon redelivers with delivery count + 1, then max delivery count dead-letters', async (client) => {
  const q = queueName('abandon');
  const sender = client.createSender(q);
  await sender.sendMessages({ body: 'flaky' });
  const receiver = client.createReceiver(q);
  for (let attempt = 0; attempt < 3; attempt++) {
    const [m] = await receiveExactly(receiver, 1);
    assert.equal(m.deliveryCount, attempt);
    await receiver.abandonMessage(m);
  }
  assert.equal((await receiver.receiveMessages(1, { maxWaitTimeInMs: 300 })).length, 0, 'message not moved after 3 attempts');
  const dlq = client.createReceiver(q, { subQueueType: 'deadLetter' });
  const [dead] = await receiveExactly(dlq, 1);
  assert.equal(dead.body, 'flaky');
  assert.equal(dead.deadLetterReason, 'MaxDeliveryCountExceeded');
  assert.equal(dead.deadLetterSource, q);
  await dlq.completeMessage(dead);
  await Promise.all([dlq.close(), receiver.close(), sender.close()]);
});

check('dead-letter keeps reason and description, readable from the DLQ', async (client) => {
  const q = queueName('dlq');
  const sender = client.createSender(q);
  await sender.sendMessages({ body: 'poison', messageId: 'p-1', applicationProperties: { kept: 'yes' } });
  const receiver = client.createReceiver(q);
  const [m] = await receiveExactly(receiver, 1);
  await receiver.deadLetterMessage(m, { deadLetterReason: 'Validation', deadLetterErrorDescription: 'field x missing' });
  const dlq = client.createReceiver(q, { subQueueType: 'deadLetter' });
  const [dead] = await receiveExactly(dlq, 1);
  assert.equal(dead.body, 'poison');
  assert.equal(dead.messageId, 'p-1');
  assert.equal(dead.deadLetterReason, 'Validation');
  assert.equal(dead.deadLetterErrorDescription, 'field x missing');
  assert.equal(dead.applicationProperties.kept, 'yes');
  await dlq.completeMessage(dead);
  assert.equal((await receiver.receiveMessages(1, { maxWaitTimeInMs: 300 })).length, 0);
  await Promise.all([dlq.close(), receiver.close(), sender.close()]);
});

check('defer, then receive deferred by sequence number and complete', async (client) => {
  const q = queueName('defer');
  const sender = client.createSender(q);
  await sender.sendMessages([{ body: 'later' }, { body: 'now' }]);
  const receiver = client.createReceiver(q);
  const [first] = await receiveExactly(receiver, 1);
  assert.equal(first.body, 'later');
  const seq = first.sequenceNumber;
  await receiver.deferMessage(first);
  const [second] = await receiveExactly(receiver, 1);
  assert.equal(second.body, 'now', 'deferred message was delivered again');
  await receiver.completeMessage(second);
  const [deferred] = await receiver.receiveDeferredMessages(seq);
  assert.equal(deferred.body, 'later');
  assert.equal(deferred.state, 'deferred');
  await receiver.completeMessage(deferred);
  await assert.rejects(receiver.receiveDeferredMessages(seq), 'completed deferred message still there');
  await Promise.all([receiver.close(), sender.close()]);
});

check('schedule delivers at the time; cancel removes a scheduled message', async (client) => {
  const q = queueName('schedule');
  const sender = client.createSender(q);
  const at = new Date(Date.now() + 1500);
  const [keep] = await sender.scheduleMessages({ body: 'scheduled' }, at);
  const [drop] = await sender.scheduleMessages({ body: 'cancelled' }, at);
  await sender.cancelScheduledMessages(drop);
  const receiver = client.createReceiver(q);
  const peeked = await receiver.peekMessages(10);
  assert.deepEqual(peeked.map((m) => [m.body, m.state]), [['scheduled', 'scheduled']]);
  assert.equal(peeked[0].sequenceNumber.toNumber(), keep.toNumber());
  const [m] = await receiveExactly(receiver, 1);
  assert.equal(m.body, 'scheduled');
  assert.ok(Date.now() >= at.getTime() - 50, 'delivered before its scheduled time');
  assert.equal(m.scheduledEnqueueTimeUtc.getTime(), at.getTime());
  await receiver.completeMessage(m);
  assert.equal((await receiver.receiveMessages(1, { maxWaitTimeInMs: 1000 })).length, 0, 'cancelled message delivered');
  await Promise.all([receiver.close(), sender.close()]);
});

check('peek reads without locking, 204 when empty', async (client) => {
  const q = queueName('peek');
  const receiver = client.createReceiver(q);
  assert.deepEqual(await receiver.peekMessages(5), []);
  const sender = client.createSender(q);
  await sender.sendMessages([{ body: 'a' }, { body: 'b' }, { body: 'c' }]);
  const peeked = await receiver.peekMessages(2, { fromSequenceNumber: undefined });
  assert.deepEqual(peeked.map((m) => m.body), ['a', 'b']);
  assert.equal(peeked[0].lockToken, undefined);
  const rest = await receiver.peekMessages(5);
  assert.deepEqual(rest.map((m) => m.body), ['c']);
  const got = await receiveExactly(receiver, 3);
  assert.deepEqual(got.map((m) => m.deliveryCount), [0, 0, 0], 'peek counted as a delivery');
  await Promise.all(got.map((m) => receiver.completeMessage(m)));
  await Promise.all([receiver.close(), sender.close()]);
});

check('renew lock extends the lock; an expired lock fails the settle and redelivers', async (client) => {
  const q = queueName('renew');
  const sender = client.createSender(q);
  await sender.sendMessages({ body: 'slow' });
  const receiver = client.createReceiver(q, { maxAutoLockRenewalDurationInMs: 0 });
  const [m] = await receiveExactly(receiver, 1);
  const before = m.lockedUntilUtc.getTime();
  await new Promise((r) => setTimeout(r, 50));
  const renewed = await receiver.renewMessageLock(m);
  assert.ok(renewed.getTime() > before, 'lock not extended');
  assert.equal(m.lockedUntilUtc.getTime(), renewed.getTime());
  await receiver.completeMessage(m);
  await sender.sendMessages({ body: 'expires' });
  const [e] = await receiveExactly(receiver, 1);
  // the peer was started with 3 s locks: wait for this one to lapse
  const [again] = await receiveExactly(receiver, 1).catch(async () => receiveExactly(receiver, 1));
  assert.equal(again.body, 'expires');
  assert.equal(again.deliveryCount, 1);
  await assert.rejects(receiver.completeMessage(e), (err) => err.code === 'MessageLockLost', 'stale lock token accepted');
  await receiver.completeMessage(again);
  await Promise.all([receiver.close(), sender.close()]);
});

check('accept a named session and the next available session, in order', async (client) => {
  const q = 'orders-sessions';
  const sender = client.createSender(q);
  await assert.rejects(sender.sendMessages({ body: 'no session' }), 'session queue accepted a message without session id');
  await sender.sendMessages([
    { body: 'a1', sessionId: 'alpha' }, { body: 'b1', sessionId: 'beta' },
    { body: 'a2', sessionId: 'alpha' }, { body: 'b2', sessionId: 'beta' },
  ]);
  const alpha = await client.acceptSession(q, 'alpha');
  assert.equal(alpha.sessionId, 'alpha');
  assert.ok(alpha.sessionLockedUntilUtc > new Date());
  await assert.rejects(client.acceptSession(q, 'alpha'), (err) => err.code === 'SessionCannotBeLocked');
  const next = await client.acceptNextSession(q);
  assert.equal(next.sessionId, 'beta', 'next available session should be the other one');
  const a = await receiveExactly(alpha, 2);
  assert.deepEqual(a.map((m) => [m.body, m.sessionId]), [['a1', 'alpha'], ['a2', 'alpha']]);
  const b = await receiveExactly(next, 2);
  assert.deepEqual(b.map((m) => [m.body, m.sessionId]), [['b1', 'beta'], ['b2', 'beta']]);
  await Promise.all(a.map((m) => alpha.completeMessage(m)));
  await Promise.all(b.map((m) => next.completeMessage(m)));
  await Promise.all([alpha.close(), next.close()]);
  // With nothing left, "next available" waits the operation timeout and fails.
  const impatient = new ServiceBusClient(connectionString,
    { retryOptions: { maxRetries: 0, timeoutInMs: 500 } });
  const startedWaiting = Date.now();
  await assert.rejects(impatient.acceptNextSession(q), (err) => err.code === 'ServiceTimeout' || /timed? ?out|No unlocked sessions/i.test(err.message),
    'a session was handed out while none has messages');
  assert.ok(Date.now() - startedWaiting < 5000, 'waited far longer than the timeout');
  await impatient.close();
  await sender.close();
});

check('session state round-trips and session lock renews', async (client) => {
  const q = 'orders-sessions';
  const sender = client.createSender(q);
  await sender.sendMessages({ body: 'g1', sessionId: 'gamma' });
  const s = await client.acceptSession(q, 'gamma', { maxAutoLockRenewalDurationInMs: 0 });
  assert.equal(await s.getSessionState(), null);
  await s.setSessionState('step-2');
  assert.equal(await s.getSessionState(), 'step-2');
  const before = s.sessionLockedUntilUtc.getTime();
  await new Promise((r) => setTimeout(r, 50));
  const renewed = await s.renewSessionLock();
  assert.ok(renewed.getTime() > before, 'session lock not extended');
  const [m] = await receiveExactly(s, 1);
  await s.completeMessage(m);
  await s.close();
  const again = await client.acceptSession(q, 'gamma');
  assert.equal(await again.getSessionState(), 'step-2', 'session state lost when the session was released');
  await again.setSessionState(null);
  await again.close();
  await sender.close();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

check('time-to-live: an expired message is not delivered, or is dead-lettered with TTLExpiredException', async (client) => {
  const q = queueName('ttl');
  const sender = client.createSender(q);
  await sender.sendMessages([{ body: 'expiring', timeToLive: 400 }, { body: 'lasting', timeToLive: 60000 }]);
  const receiver = client.createReceiver(q);
  // Waiting out the time-to-live is the event under test.
  await sleep(800);
  const [m] = await receiveExactly(receiver, 1);
  assert.equal(m.body, 'lasting', 'an expired message was delivered');
  assert.equal(m.timeToLive, 60000);
  assert.equal(m.expiresAtUtc.getTime(), m.enqueuedTimeUtc.getTime() + 60000, 'expiry is not enqueued time + ttl');
  await receiver.completeMessage(m);
  assert.equal((await receiver.receiveMessages(1, { maxWaitTimeInMs: 300 })).length, 0, 'an expired message came back');
  const plainDlq = client.createReceiver(q, { subQueueType: 'deadLetter' });
  assert.equal((await plainDlq.receiveMessages(1, { maxWaitTimeInMs: 300 })).length, 0,
    'a queue without dead-lettering on expiration dead-lettered an expired message');

  // A queue that dead-letters on expiration (the peer's --dead-letter-on-expiration-queues).
  const dq = 'orders-expiring';
  const dsender = client.createSender(dq);
  await dsender.sendMessages({ body: 'expiring', messageId: 'e-1', timeToLive: 400 });
  const dreceiver = client.createReceiver(dq);
  await sleep(800);
  assert.equal((await dreceiver.receiveMessages(1, { maxWaitTimeInMs: 300 })).length, 0, 'an expired message was delivered');
  const dlq = client.createReceiver(dq, { subQueueType: 'deadLetter' });
  const [dead] = await receiveExactly(dlq, 1);
  assert.equal(dead.body, 'expiring');
  assert.equal(dead.messageId, 'e-1');
  assert.equal(dead.deadLetterReason, 'TTLExpiredException');
  await dlq.completeMessage(dead);
  await Promise.all([plainDlq.close(), receiver.close(), sender.close(), dlq.close(), dreceiver.close(), dsender.close()]);
});

check('an unrenewed session lock expires: the session is free again and the old holder lost it', async (client) => {
  const q = 'orders-sessions';
  const sender = client.createSender(q);
  await sender.sendMessages({ body: 'd1', sessionId: 'delta' });
  const first = await client.acceptSession(q, 'delta', { maxAutoLockRenewalDurationInMs: 0 });
  const [m] = await receiveExactly(first, 1);
  await assert.rejects(client.acceptSession(q, 'delta'), (err) => err.code === 'SessionCannotBeLocked',
    'a held session was handed out');
  // The peer was started with 3 s locks: waiting for this one to lapse is the event under test.
  await sleep(first.sessionLockedUntilUtc.getTime() - Date.now() + 500);
  const second = await client.acceptSession(q, 'delta', { maxAutoLockRenewalDurationInMs: 0 });
  const [again] = await receiveExactly(second, 1);
  assert.equal(again.body, 'd1');
  assert.equal(again.deliveryCount, 1, 'the lapsed delivery was not counted');
  await assert.rejects(first.completeMessage(m), (err) => err.code === 'SessionLockLost',
    'the old holder settled a message of a session it lost');
  await second.completeMessage(again);
  await Promise.all([second.close(), first.close().catch(() => {}), sender.close()]);
});

check('size limit: the link announces 256 KiB; a message that fits arrives whole, a larger one is refused', async (client) => {
  const q = queueName('size');
  const sender = client.createSender(q);
  const batch = await sender.createMessageBatch();
  assert.equal(batch.maxSizeInBytes, 262144);
  const body = Buffer.alloc(250 * 1024, 0x61);
  await sender.sendMessages({ body });
  await assert.rejects(sender.sendMessages({ body: Buffer.alloc(262144 + 1, 0x62) }),
    (err) => err.code === 'MessageSizeExceeded', 'a message over the link limit was sent');
  const receiver = client.createReceiver(q);
  const [m] = await receiveExactly(receiver, 1);
  assert.deepEqual(Buffer.from(m.body), body);
  await receiver.completeMessage(m);
  assert.equal((await receiver.receiveMessages(1, { maxWaitTimeInMs: 300 })).length, 0, 'the oversize message arrived');
  await Promise.all([receiver.close(), sender.close()]);
});

check('a missing entity refuses the attach: sender and receiver fail with MessagingEntityNotFound', async () => {
  // A peer that only knows created queues (qrt's strict test uses the same flag).
  const strict = await startPeer(['--require-created']);
  const client = new ServiceBusClient(
    `Endpoint=sb://127.0.0.1:${strict.port}/;SharedAccessKeyName=x;SharedAccessKey=y;UseDevelopmentEmulator=true`,
    { retryOptions: { maxRetries: 0, timeoutInMs: 8000 } });
  try {
    const notFound = (err) => err.code === 'MessagingEntityNotFound' && /nowhere/.test(err.message);
    const sender = client.createSender('nowhere');
    await assert.rejects(sender.sendMessages({ body: 'x' }), notFound, 'send to a missing queue');
    const receiver = client.createReceiver('nowhere');
    await assert.rejects(receiver.receiveMessages(1, { maxWaitTimeInMs: 1000 }), notFound, 'receive from a missing queue');
  } finally {
    await client.close().catch(() => {});
    strict.child.removeAllListeners('exit');
    strict.child.kill('SIGTERM');
  }
});

// Topics and subscriptions are made through the peer's $peer-admin node (a namespace makes them
// through ARM, which the SDK's AMQP client does not speak): one request per call, over rhea.
function peerAdmin(properties, body = {}) {
  const rhea = require('rhea');
  return new Promise((resolve, reject) => {
    const connection = rhea.create_container().connect({ port: peerPort, host: '127.0.0.1', reconnect: false });
    const replyTo = 'admin-reply';
    const sender = connection.open_sender('$peer-admin');
    const receiver = connection.open_receiver({ source: { address: '$peer-admin' }, target: { address: replyTo } });
    receiver.once('receiver_open', () => sender.send({ reply_to: replyTo, message_id: 'admin-1', application_properties: properties, body }));
    receiver.once('message', (context) => {
      connection.close();
      const status = context.message.application_properties.statusCode;
      if (status >= 300) reject(new Error(`${properties.operation}: ${status} ${context.message.application_properties.statusDescription}`));
      else resolve(context.message.body);
    });
    connection.once('connection_error', (context) => reject(context.error || new Error('admin connection failed')));
  });
}

check('topics: fan-out to subscriptions, correlation rules through the rule manager, subscription DLQ and sessions', async (client) => {
  const topic = queueName('topic');
  await peerAdmin({ operation: 'create-topic', topic });
  for (const subscription of ['all', 'red']) await peerAdmin({ operation: 'create-subscription', topic, subscription });
  await peerAdmin({ operation: 'create-subscription', topic, subscription: 'sessions' }, { 'requires-session': true });
  const rules = client.createRuleManager(topic, 'red');
  await rules.createRule('only-red', { subject: 'red', applicationProperties: { tenant: 't1' } });
  await rules.deleteRule('$Default');
  const listed = [];
  for await (const rule of rules.listRules()) listed.push(rule);
  assert.deepEqual(listed.map((r) => [r.name, r.filter.subject, r.filter.applicationProperties]),
    [['only-red', 'red', { tenant: 't1' }]]);
  await assert.rejects(rules.createRule('only-red', { subject: 'x' }), (e) => e.code === 'MessagingEntityAlreadyExists');
  const defaults = [];
  for await (const rule of client.createRuleManager(topic, 'all').listRules()) defaults.push(rule);
  assert.deepEqual(defaults.map((r) => [r.name, r.filter.sqlExpression]), [['$Default', '1=1']]);

  const sender = client.createSender(topic);
  await sender.sendMessages([
    { body: 'red-t1', messageId: 'p-1', subject: 'red', applicationProperties: { tenant: 't1' } },
    { body: 'red-t2', subject: 'red', applicationProperties: { tenant: 't2' } },
  ]);
  const all = client.createReceiver(topic, 'all');
  const fanned = await receiveExactly(all, 2);
  assert.deepEqual(fanned.map((m) => m.body), ['red-t1', 'red-t2']);
  for (const m of fanned) await all.completeMessage(m);
  const red = client.createReceiver(topic, 'red');
  const [onlyRed] = await receiveExactly(red, 1);
  assert.equal(onlyRed.body, 'red-t1');
  assert.equal(onlyRed.messageId, 'p-1');
  await red.deadLetterMessage(onlyRed, { deadLetterReason: 'Checked', deadLetterErrorDescription: 'by the SDK' });
  assert.equal((await red.receiveMessages(1, { maxWaitTimeInMs: 300 })).length, 0, 'the filter let red-t2 through');
  const dlq = client.createReceiver(topic, 'red', { subQueueType: 'deadLetter' });
  const [dead] = await receiveExactly(dlq, 1);
  assert.equal(dead.body, 'red-t1');
  assert.equal(dead.deadLetterReason, 'Checked');
  await dlq.completeMessage(dead);
  // The sessionful subscription got both (without session ids: never delivered); a message of
  // session s1 published once the others are gone is read through the session.
  for (const subscription of ['all', 'red']) await peerAdmin({ operation: 'delete-subscription', topic, subscription });
  await sender.sendMessages({ body: 'blue', subject: 'blue', sessionId: 's1' });
  const session = await client.acceptSession(topic, 'sessions', 's1');
  const inSession = await receiveExactly(session, 1);
  assert.equal(inSession[0].body, 'blue');
  await session.completeMessage(inSession[0]);
  await Promise.all([sender.close(), all.close(), red.close(), dlq.close(), session.close()]);

  await assert.rejects(client.createSender(`${topic}/Subscriptions/sessions`).sendMessages({ body: 'x' }),
    /send to its topic/, 'a send to a subscription is refused');
  // Deleting the topic deletes its subscriptions; a subscription is never made on first use.
  await peerAdmin({ operation: 'delete-topic', topic });
  const gone = client.createReceiver(topic, 'sessions', { receiveMode: 'receiveAndDelete' });
  await assert.rejects(gone.receiveMessages(1, { maxWaitTimeInMs: 1000 }), (e) => e.code === 'MessagingEntityNotFound');
  await gone.close();
});

async function main() {
  let peer = null;
  let port = process.env.SB_PEER_PORT;
  if (!port) {
    peer = await startPeer();
    port = peer.port;
  }
  peerPort = Number(port);
  connectionString = `Endpoint=sb://127.0.0.1:${port}/;SharedAccessKeyName=x;SharedAccessKey=y;UseDevelopmentEmulator=true`;
  const client = new ServiceBusClient(connectionString,
    { retryOptions: { maxRetries: 0, timeoutInMs: 8000 } });
  const only = process.argv[2];
  let passed = 0;
  let failed = 0;
  for (const c of checks) {
    if (only && !c.name.includes(only)) continue;
    const started = Date.now();
    try {
      await withTimeout(c.fn(client), c.name);
      passed++;
      console.log(`ok   ${c.name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${c.name}: ${e && e.stack}`);
    }
  }
  await client.close().catch(() => {});
  if (peer) {
    peer.child.removeAllListeners('exit');
    peer.child.kill('SIGTERM');
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
