#!/usr/bin/env node
// A Service Bus test peer: an AMQP 1.0 server (rhea) that speaks the Service Bus extensions the
// official SDK and qrt use — CBS put-token, peek-lock with lock tokens in delivery tags, the
// x-opt-* annotations, settlement outcomes, max delivery count and the dead-letter sub-queue,
// batch transfers, session filters and the $management request/response operations.
//
// Fidelity over convenience: a message's properties, application properties and body are kept
// as the exact bytes the sender encoded and only the header and message annotations are
// rewritten on delivery (plus DeadLetterReason/DeadLetterErrorDescription when dead-lettered),
// so what a receiver sees is what the sender sent.
//
// Usage: node peer.js [--port N] [--lock-duration-ms N] [--max-delivery-count N]
//                     [--sas-key-name NAME --sas-key KEY] [--jwt TOKEN,TOKEN...]
//                     [--max-message-size N] [--max-token-lifetime-ms N]
//                     [--session-queues a,b] [--dead-letter-on-expiration-queues a,b]
//                     [--hold-settlements a,b] [--garbage-replies a,b]
//                     [--huge-replies a,b] [--short-tags a,b]
//                     [--drop-on-management a,b] [--detach-management a,b]
//                     [--detach-on-send a,b] [--detach-on-settlement a,b]
//                     [--cut-condition CONDITION] [--quiet]
// Prints one line `{"port":N}` on stdout once listening (port 0 = picked by the OS).
//
// Queues are created on demand by the first attach or request that names them, with the
// defaults above. A small admin node, `$peer-admin` (request/response like $management, property
// `operation` = create-queue | delete-queue | queue-stats | reset), lets tests create a queue
// with its own lock duration, max delivery count and requires-session flag, and read counts.
//
// Topics and subscriptions exist only once made through $peer-admin (create-topic,
// create-subscription; delete-topic, delete-subscription, list-subscriptions), as on a real
// namespace where they are made through ARM. A transfer to a topic's address is copied to each
// subscription with a rule that matches it; a subscription is a queue (peek-lock, delivery
// count, dead-letter queue, sessions) addressed "<topic>/Subscriptions/<name>". Its rules are
// managed through its $management node with com.microsoft:add-rule, remove-rule and
// enumerate-rules; a new subscription has the rule "$Default" (true filter). Filters: correlation
// filters (label, application properties and the other system properties, by equality) and the
// SQL filters "1=1" and "1=0" only.
'use strict';

const crypto = require('crypto');
const rhea = require('rhea');
const types = rhea.types;
const amqpMessage = rhea.message;

// ---------------------------------------------------------------------------------------------
// Options
const args = process.argv.slice(2);
function arg(name, fallback) {
  const i = args.indexOf('--' + name);
  if (i >= 0 && i + 1 < args.length) return args[i + 1];
  const env = process.env['SB_PEER_' + name.toUpperCase().replace(/-/g, '_')];
  return env !== undefined ? env : fallback;
}
const options = {
  port: Number(arg('port', 0)),
  lockDurationMs: Number(arg('lock-duration-ms', 30000)),
  maxDeliveryCount: Number(arg('max-delivery-count', 10)),
  sasKeyName: arg('sas-key-name', ''),
  sasKey: arg('sas-key', ''),
  // Azure AD tokens (put-token type "jwt") the namespace accepts, as a managed identity would
  // get them; others are refused with 401. Without it every jwt is accepted, unchecked.
  jwts: new Set(String(arg('jwt', '')).split(',').filter(Boolean)),
  maxMessageSize: Number(arg('max-message-size', 262144)),
  // SAS tokens that expire further ahead than this are refused (0: any lifetime), so that a
  // test sees the lifetime a client signs its tokens for.
  maxTokenLifetimeMs: Number(arg('max-token-lifetime-ms', 0)),
  sessionQueues: new Set(String(arg('session-queues', '')).split(',').filter(Boolean)),
  // Queues that dead-letter expired messages without being made through $peer-admin (the SDK
  // check uses one: the official client has no way to set it).
  deadLetterOnExpirationQueues: new Set(String(arg('dead-letter-on-expiration-queues', '')).split(',').filter(Boolean)),
  quiet: args.includes('--quiet'),
  // Only queues made through $peer-admin (or --queues) exist; others are amqp:not-found, as on
  // a real namespace. Without it, the first attach to a name creates the queue.
  requireCreated: args.includes('--require-created'),
  // Test hook: outcomes on these queues are never answered (a service that does not confirm).
  holdSettlements: new Set(String(arg('hold-settlements', '')).split(',').filter(Boolean)),
  // Test hook: $management requests on these queues are answered with bytes that are not an
  // AMQP message (a broken or hostile service).
  garbageReplies: new Set(String(arg('garbage-replies', '')).split(',').filter(Boolean)),
  hugeReplies: new Set(String(arg('huge-replies', '')).split(',').filter(Boolean)),
  // Test hooks: a $management request on these queues is taken and never answered; the peer
  // drops the connection (socket closed, no close frame) or detaches the request link with
  // amqp:link:detach-forced instead, so the request is lost after it reached the service.
  dropOnManagement: new Set(String(arg('drop-on-management', '')).split(',').filter(Boolean)),
  detachManagement: new Set(String(arg('detach-management', '')).split(',').filter(Boolean)),
  // Test hooks: a transfer to these queues is stored, or an outcome on them applied, and never
  // answered: the peer detaches the link instead, so the client cannot know it took effect.
  detachOnSend: new Set(String(arg('detach-on-send', '')).split(',').filter(Boolean)),
  detachOnSettlement: new Set(String(arg('detach-on-settlement', '')).split(',').filter(Boolean)),
  // The condition of the detaches above and of --detach-management (a com.microsoft:* one
  // shows that the client does not read it as a verdict on what it sent).
  cutCondition: arg('cut-condition', 'amqp:link:detach-forced'),
  // Test hook: deliveries on these queues carry an 8-byte tag instead of the 16-byte lock token
  // (a broker that is not Service Bus, or a broken one); outcomes still settle them.
  shortTags: new Set(String(arg('short-tags', '')).split(',').filter(Boolean)),
  queues: String(arg('queues', '')).split(',').filter(Boolean),
};
const log = options.quiet ? () => {} : (...a) => console.error('[sb-peer]', ...a);

// ---------------------------------------------------------------------------------------------
// Constants of the Service Bus protocol
const BATCH_FORMAT = 0x80013700;
const DLQ_SUFFIX = '/$DeadLetterQueue';
const MGMT_SUFFIX = '/$management';
const SESSION_FILTER = 'com.microsoft:session-filter';
const LOCKED_UNTIL_UTC = 'com.microsoft:locked-until-utc';
const TIMEOUT_PROP = 'com.microsoft:timeout';
const TICKS_AT_UNIX_EPOCH = 621355968000000000n;
const SECTION = { header: 0x70, deliveryAnnotations: 0x71, messageAnnotations: 0x72, applicationProperties: 0x74 };

function ticksBuffer(ms) {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(Math.floor(ms)) * 10000n + TICKS_AT_UNIX_EPOCH);
  return b;
}
function longBuffer(n) {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return b;
}
function readLong(v) {
  if (Buffer.isBuffer(v)) return Number(v.readBigInt64BE());
  if (typeof v === 'bigint') return Number(v);
  return Number(v);
}

// A lock token is a GUID; on the wire it is the AMQP uuid (RFC 4122 byte order) in management
// bodies and the delivery tag in .NET's Guid.ToByteArray() order (first three groups reversed).
function dotnetOrder(uuid) {
  const b = Buffer.from(uuid);
  b.writeUInt32LE(uuid.readUInt32BE(0), 0);
  b.writeUInt16LE(uuid.readUInt16BE(4), 4);
  b.writeUInt16LE(uuid.readUInt16BE(6), 6);
  return b;
}
const uuidKey = (b) => Buffer.from(b).toString('hex');

// ---------------------------------------------------------------------------------------------
// Messages kept as sections
function splitSections(raw) {
  const reader = new types.Reader(raw);
  const sections = [];
  while (reader.remaining()) {
    const start = reader.position;
    const typed = reader.read();
    if (!typed.descriptor) throw new Error('message section without descriptor');
    sections.push({ code: Number(typed.descriptor.value), raw: raw.slice(start, reader.position), typed });
  }
  return sections;
}

class StoredMessage {
  constructor(raw) {
    this.sections = splitSections(raw);
    this.decoded = amqpMessage.decode(raw); // for reading fields; never re-encoded
    if (this.decoded.message_id === undefined || this.decoded.message_id === null) this.assignMessageId();
    this.sequenceNumber = 0;
    this.enqueuedTime = Date.now();
    this.deliveryCount = 0;
    this.state = 'active'; // active | locked | deferred | scheduled
    this.lockToken = null; // uuid Buffer (RFC order)
    this.lockedUntil = 0;
    this.lockedBy = null; // the sender link holding the lock (null for management locks)
    this.delivery = null;
    this.lockTimer = null;
    this.scheduledTime = 0;
    this.deadLetter = null; // {reason, description, source}
    const annotations = this.decoded.message_annotations || {};
    const scheduled = annotations['x-opt-scheduled-enqueue-time'];
    if (scheduled instanceof Date && scheduled.getTime() > Date.now()) {
      this.scheduledTime = scheduled.getTime();
    }
    const ttl = this.decoded.ttl;
    this.expiresAt = typeof ttl === 'number' && ttl > 0 ? this.enqueuedTime + ttl : Infinity;
  }
  // The service gives a message without message-id one of its own.
  assignMessageId() {
    const id = crypto.randomBytes(16).toString('hex');
    this.decoded.message_id = id;
    const writer = new types.Writer();
    let props = this.sections.find((s) => s.code === 0x73);
    const fields = props && props.typed ? props.typed.value.slice() : [];
    if (fields.length === 0) fields.push(types.wrap_string(id));
    else fields[0] = types.wrap_string(id);
    writer.write(types.described(types.wrap_ulong(0x73), types.wrap_list(fields)));
    const section = { code: 0x73, raw: writer.toBuffer(), typed: null };
    if (props) {
      this.sections[this.sections.indexOf(props)] = section;
    } else {
      const at = this.sections.findIndex((s) => s.code > 0x73);
      this.sections.splice(at < 0 ? this.sections.length : at, 0, section);
    }
  }
  get sessionId() {
    return this.decoded.group_id === undefined || this.decoded.group_id === null ? null : String(this.decoded.group_id);
  }
  get messageId() {
    return this.decoded.message_id;
  }
  // The message as a receiver sees it: rewritten header and message annotations, the rest as sent.
  encode(extraAnnotations) {
    const d = this.decoded;
    const header = {};
    for (const f of ['durable', 'priority', 'ttl', 'first_acquirer']) if (d[f] !== undefined) header[f] = d[f];
    header.delivery_count = this.deliveryCount;
    const annotations = Object.assign({}, d.message_annotations || {});
    annotations['x-opt-sequence-number'] = types.wrap_long(longBuffer(this.sequenceNumber));
    annotations['x-opt-enqueued-time'] = types.wrap_timestamp(this.enqueuedTime);
    if (this.state === 'locked') annotations['x-opt-locked-until'] = types.wrap_timestamp(this.lockedUntil);
    if (this.state === 'deferred' || this.wasDeferred) annotations['x-opt-message-state'] = types.wrap_int(1);
    if (this.state === 'scheduled') annotations['x-opt-message-state'] = types.wrap_int(2);
    if (this.deadLetter && this.deadLetter.source) annotations['x-opt-deadletter-source'] = this.deadLetter.source;
    Object.assign(annotations, extraAnnotations || {});
    const prefix = splitSections(amqpMessage.encode(Object.assign(header, { message_annotations: annotations })))
      .filter((s) => s.code === SECTION.header || s.code === SECTION.messageAnnotations)
      .map((s) => s.raw);
    const rest = [];
    let sawApplicationProperties = false;
    for (const s of this.sections) {
      if (s.code === SECTION.header || s.code === SECTION.deliveryAnnotations || s.code === SECTION.messageAnnotations) continue;
      if (s.code === SECTION.applicationProperties && this.deadLetter) {
        sawApplicationProperties = true;
        rest.push(this.deadLetterProperties(s.typed));
        continue;
      }
      if (s.code > SECTION.applicationProperties && this.deadLetter && !sawApplicationProperties) {
        sawApplicationProperties = true;
        rest.push(this.deadLetterProperties(null));
      }
      rest.push(s.raw);
    }
    return Buffer.concat(prefix.concat(rest));
  }
  deadLetterProperties(typed) {
    const entries = typed ? typed.value.slice() : [];
    const put = (key, value) => {
      for (let i = 0; i < entries.length; i += 2) {
        if (entries[i].value === key) {
          entries.splice(i, 2);
          break;
        }
      }
      entries.push(types.wrap_string(key), types.wrap_string(value));
    };
    if (this.deadLetter.reason !== undefined) put('DeadLetterReason', this.deadLetter.reason);
    if (this.deadLetter.description !== undefined) put('DeadLetterErrorDescription', this.deadLetter.description);
    const writer = new types.Writer();
    writer.write(types.described(types.wrap_ulong(SECTION.applicationProperties), types.Map32(entries)));
    return writer.toBuffer();
  }
}

// ---------------------------------------------------------------------------------------------
// Queues
class Session {
  constructor(id) {
    this.id = id;
    this.state = null; // Buffer or null
    this.lockedBy = null; // sender link
    this.lockedUntil = 0;
    this.timer = null;
  }
}

class Queue {
  constructor(name, settings = {}) {
    this.name = name;
    this.lockDurationMs = settings.lockDurationMs ?? options.lockDurationMs;
    this.maxDeliveryCount = settings.maxDeliveryCount ?? options.maxDeliveryCount;
    this.requiresSession = settings.requiresSession ?? options.sessionQueues.has(name);
    // As on the service, expired messages are dropped unless the queue dead-letters them.
    this.deadLetterOnExpiration = settings.deadLetterOnExpiration ?? options.deadLetterOnExpirationQueues.has(name);
    this.expired = 0;
    this.messages = new Map(); // sequence number -> StoredMessage (in order of insertion)
    this.nextSequence = 1;
    this.receivers = new Set(); // our sender links attached to this queue
    this.sessions = new Map(); // id -> Session
    this.deadLetters = null; // Queue, created lazily (the DLQ has none itself)
    this.isDeadLetterQueue = false;
  }
  dlq() {
    if (!this.deadLetters) {
      this.deadLetters = new Queue(this.name + DLQ_SUFFIX, { maxDeliveryCount: 0, requiresSession: false });
      this.deadLetters.isDeadLetterQueue = true;
    }
    return this.deadLetters;
  }
  session(id) {
    let s = this.sessions.get(id);
    if (!s) {
      s = new Session(id);
      this.sessions.set(id, s);
    }
    return s;
  }
  enqueue(msg) {
    msg.sequenceNumber = this.nextSequence++;
    msg.enqueuedTime = Date.now();
    if (msg.scheduledTime) {
      msg.state = 'scheduled';
      const delay = Math.max(0, msg.scheduledTime - Date.now());
      msg.scheduleTimer = setTimeout(() => {
        if (msg.state !== 'scheduled' || !this.messages.has(msg.sequenceNumber)) return;
        msg.state = 'active';
        msg.enqueuedTime = Date.now();
        pump(this);
      }, delay);
    }
    this.messages.set(msg.sequenceNumber, msg);
    if (msg.sessionId !== null) this.session(msg.sessionId);
    return msg.sequenceNumber;
  }
  counts() {
    const c = { active: 0, locked: 0, deferred: 0, scheduled: 0 };
    for (const m of this.messages.values()) c[m.state]++;
    c.deadLettered = this.deadLetters ? this.deadLetters.messages.size : 0;
    c.expired = this.expired;
    return c;
  }
}

const queues = new Map();
function queueFor(entity, create = true) {
  let base = entity;
  let dead = false;
  if (base.endsWith(DLQ_SUFFIX)) {
    base = base.slice(0, -DLQ_SUFFIX.length);
    dead = true;
  }
  let q = queues.get(base);
  if (!q) {
    // A subscription exists only once created (with its topic), never on first use.
    if (!create || base.includes(SUBSCRIPTIONS_INFIX) || topics.has(base)) return null;
    q = new Queue(base);
    queues.set(base, q);
  }
  return dead ? q.dlq() : q;
}
// ---------------------------------------------------------------------------------------------
// Topics and subscriptions
const SUBSCRIPTIONS_INFIX = '/Subscriptions/';
const DEFAULT_RULE = '$Default';
const RULE = {
  description: 0x0000013700000004,
  emptyAction: 0x0000013700000005,
  sqlAction: 0x0000013700000006,
  sqlFilter: 0x0000001370000006,
  trueFilter: 0x0000001370000007,
  falseFilter: 0x0000001370000008,
  correlationFilter: 0x0000001370000009,
};
// The correlation filter's fields: the add-rule map key, the message field it matches.
const CORRELATION_FIELDS = [
  ['correlation-id', 'correlation_id'], ['message-id', 'message_id'], ['to', 'to'],
  ['reply-to', 'reply_to'], ['label', 'subject'], ['session-id', 'group_id'],
  ['reply-to-session-id', 'reply_to_group_id'], ['content-type', 'content_type'],
];

const topics = new Map(); // name -> {name, subscriptions: Map(name -> subscription)}

function subscriptionPath(topic, name) {
  return topic + SUBSCRIPTIONS_INFIX + name;
}

class Subscription {
  constructor(topic, name, settings) {
    this.topic = topic;
    this.name = name;
    this.queue = new Queue(subscriptionPath(topic.name, name), settings);
    this.queue.subscription = this;
    this.rules = new Map([[DEFAULT_RULE, { name: DEFAULT_RULE, filter: { kind: 'true' }, createdAt: Date.now() }]]);
  }
  matches(decoded) {
    for (const rule of this.rules.values()) if (filterMatches(rule.filter, decoded)) return true;
    return false;
  }
}

const present = (v) => v !== undefined && v !== null;

function filterMatches(filter, decoded) {
  switch (filter.kind) {
    case 'true':
      return true;
    case 'false':
      return false;
    case 'correlation': {
      for (const [key, field] of CORRELATION_FIELDS) {
        const want = filter.fields[key];
        if (present(want) && (!present(decoded[field]) || String(decoded[field]) !== String(want))) return false;
      }
      const props = decoded.application_properties || {};
      for (const [key, want] of Object.entries(filter.properties)) {
        if (!present(props[key]) || String(props[key]) !== String(want)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

// A rule-description map of add-rule (the SDK's and the service's shape) as a filter, or a
// string saying why the peer cannot take it.
function filterFromDescription(description) {
  if (!description || typeof description !== 'object') return 'rule-description is missing';
  const correlation = description['correlation-filter'];
  const sql = description['sql-filter'];
  if (present(description['sql-rule-action'])) return 'the test peer has no rule actions';
  if (present(correlation)) {
    const fields = {};
    for (const [key] of CORRELATION_FIELDS) if (present(correlation[key])) fields[key] = correlation[key];
    const properties = {};
    const given = correlation.properties;
    if (present(given) && typeof given === 'object') {
      for (const [key, value] of Object.entries(given)) if (present(value)) properties[key] = value;
    }
    return { kind: 'correlation', fields, properties };
  }
  if (present(sql)) {
    const expression = String(sql.expression ?? '').replace(/\s+/g, '');
    if (expression === '1=1') return { kind: 'true' };
    if (expression === '1=0') return { kind: 'false' };
    return 'the test peer takes only the SQL filters 1=1 and 1=0';
  }
  return 'rule-description has neither a correlation-filter nor a sql-filter';
}

// A rule as enumerate-rules describes it: the described list the SDK decodes.
function describeRule(rule) {
  const described = (code, fields) => types.described(types.wrap_ulong(code), types.wrap_list(fields));
  const str = (v) => (present(v) ? types.wrap_string(String(v)) : null);
  let filter;
  if (rule.filter.kind === 'true') filter = described(RULE.trueFilter, [types.wrap_string('1=1')]);
  else if (rule.filter.kind === 'false') filter = described(RULE.falseFilter, [types.wrap_string('1=0')]);
  else {
    const props = [];
    for (const [key, value] of Object.entries(rule.filter.properties)) props.push(types.wrap_string(key), str(value));
    filter = described(RULE.correlationFilter,
      CORRELATION_FIELDS.map(([key]) => str(rule.filter.fields[key])).concat([types.Map32(props)]));
  }
  return types.wrap_map({
    'rule-description': described(RULE.description, [
      filter, described(RULE.emptyAction, []), types.wrap_string(rule.name), types.wrap_timestamp(rule.createdAt),
    ]),
  });
}

// Copies each published message to every subscription with a matching rule, each copy its own
// stored message (its own lock, delivery count and sequence number).
function publish(topic, payloads) {
  for (const payload of payloads) {
    const probe = new StoredMessage(payload);
    // The probe carries the message id the service assigned (when the sender set none): every
    // copy has the same one.
    const raw = Buffer.concat(probe.sections.map((section) => section.raw));
    for (const sub of topic.subscriptions.values()) {
      if (sub.matches(probe.decoded)) sub.queue.enqueue(new StoredMessage(raw));
    }
  }
  for (const sub of topic.subscriptions.values()) {
    pump(sub.queue);
    serveWaitingSessionReceivers(sub.queue);
  }
}

// Links on a deleted subscription are detached with amqp:not-found (the service does the same),
// so that a waiting receiver learns of it instead of waiting forever.
function detachAll(queue, entity) {
  for (const q of [queue, queue.deadLetters].filter(Boolean)) {
    for (const link of [...q.receivers]) {
      if (link.is_open()) link.close({ condition: 'amqp:not-found', description: `The messaging entity '${entity}' was deleted.` });
    }
  }
  for (const w of [...waitingForSession]) {
    if (w.queue === queue) {
      clearTimeout(w.timer);
      waitingForSession.delete(w);
      if (!w.link.is_closed()) {
        w.link.open();
        refuseAttach(w.link, 'amqp:not-found', `The messaging entity '${entity}' was deleted.`);
      }
    }
  }
}

function entityOf(address) {
  let a = String(address || '');
  const m = /^amqps?:\/\/[^/]+\/(.*)$/.exec(a) || /^sb:\/\/[^/]+\/(.*)$/.exec(a);
  if (m) a = m[1];
  return a.replace(/^\/+/, '');
}

// ---------------------------------------------------------------------------------------------
// Locks, settlement, dead-lettering
function clearLock(msg) {
  if (msg.lockTimer) clearTimeout(msg.lockTimer);
  msg.lockTimer = null;
  msg.lockToken = null;
  msg.lockedBy = null;
  msg.delivery = null;
  msg.lockedUntil = 0;
}

function lock(queue, msg, link) {
  msg.state = 'locked';
  msg.lockToken = crypto.randomBytes(16);
  msg.lockToken[6] = (msg.lockToken[6] & 0x0f) | 0x40; // a version-4 GUID like the service's
  msg.lockToken[8] = (msg.lockToken[8] & 0x3f) | 0x80;
  msg.lockedBy = link;
  armLockTimer(queue, msg);
}
function armLockTimer(queue, msg) {
  if (msg.lockTimer) clearTimeout(msg.lockTimer);
  msg.lockedUntil = Date.now() + queue.lockDurationMs;
  const token = msg.lockToken;
  msg.lockTimer = setTimeout(() => {
    if (msg.lockToken !== token || msg.state !== 'locked') return;
    log(`lock expired on ${queue.name} #${msg.sequenceNumber}`);
    release(queue, msg, true);
  }, queue.lockDurationMs + 1);
}

// Makes a locked message available again (abandon, lock expiry, link gone); counts the attempt
// and dead-letters it once the delivery count reaches the queue's maximum.
function release(queue, msg, countAttempt, annotationsToMerge) {
  clearLock(msg);
  if (countAttempt) msg.deliveryCount++;
  if (annotationsToMerge) mergeAnnotations(msg, annotationsToMerge);
  if (!queue.isDeadLetterQueue && msg.expiresAt <= Date.now()) {
    expire(queue, msg);
  } else if (queue.maxDeliveryCount > 0 && msg.deliveryCount >= queue.maxDeliveryCount) {
    deadLetter(queue, msg, 'MaxDeliveryCountExceeded',
      `Message could not be consumed after ${queue.maxDeliveryCount} delivery attempts.`);
  } else {
    msg.state = msg.wasDeferred ? 'deferred' : 'active'; // a deferred message stays deferred
  }
  pump(queue);
}

function mergeAnnotations(msg, annotations) {
  msg.decoded.message_annotations = Object.assign({}, msg.decoded.message_annotations || {}, annotations);
}

function deadLetter(queue, msg, reason, description) {
  clearLock(msg);
  queue.messages.delete(msg.sequenceNumber);
  if (queue.isDeadLetterQueue) return; // dead-lettering from the DLQ removes (as the service does)
  msg.state = 'active';
  msg.deadLetter = { reason, description, source: queue.name };
  msg.deliveryCount = 0;
  const dlq = queue.dlq();
  dlq.enqueue(msg);
  pump(dlq);
}

function complete(queue, msg) {
  clearLock(msg);
  queue.messages.delete(msg.sequenceNumber);
  if (msg.scheduleTimer) clearTimeout(msg.scheduleTimer);
}

function defer(queue, msg, annotationsToMerge) {
  clearLock(msg);
  msg.wasDeferred = true;
  if (annotationsToMerge) mergeAnnotations(msg, annotationsToMerge);
  msg.state = 'deferred';
}

// Applies a Service Bus disposition to a locked message. Returns an AMQP error or null.
function applyOutcome(queue, msg, outcome) {
  const type = outcome && outcome.constructor ? outcome.constructor.composite_type : undefined;
  switch (type) {
    case 'accepted':
      complete(queue, msg);
      return null;
    case 'released':
      release(queue, msg, false);
      return null;
    case 'modified': {
      const annotations = outcome.message_annotations || undefined;
      // Abandon counts a delivery attempt whatever delivery-failed says (as the service does).
      if (outcome.undeliverable_here) defer(queue, msg, annotations);
      else release(queue, msg, true, annotations);
      return null;
    }
    case 'rejected': {
      const err = outcome.error || {};
      const info = err.info || {};
      const reason = info.DeadLetterReason !== undefined ? String(info.DeadLetterReason) : undefined;
      const description = info.DeadLetterErrorDescription !== undefined ? String(info.DeadLetterErrorDescription) : undefined;
      deadLetter(queue, msg, reason, description);
      return null;
    }
    default:
      return { condition: 'amqp:not-implemented', description: `unsupported outcome ${type}` };
  }
}

// ---------------------------------------------------------------------------------------------
// Delivery to receivers
function linkState(link) {
  if (!link.sb) link.sb = { queue: null, session: null, inflight: [], drainPending: false };
  return link.sb;
}

// rhea decrements a sender's credit only when it writes a transfer; deliveries queued in this
// tick still count against it.
function effectiveCredit(link) {
  const st = linkState(link);
  const outgoing = link.session.outgoing;
  st.inflight = st.inflight.filter((d) => d.id >= outgoing.next_pending_delivery);
  return link.credit - st.inflight.length;
}

function isDeliverableTo(queue, msg, link) {
  if (msg.state !== 'active') return false;
  const st = linkState(link);
  if (st.session) return msg.sessionId === st.session.id;
  return msg.sessionId === null || queue.isDeadLetterQueue;
}

// Messages in a dead-letter queue never expire; elsewhere an expired message is dead-lettered
// or dropped (counted either way).
function expire(queue, msg) {
  queue.expired++;
  if (queue.deadLetterOnExpiration) {
    deadLetter(queue, msg, 'TTLExpiredException', 'The message expired and was dead lettered.');
  } else {
    clearLock(msg);
    queue.messages.delete(msg.sequenceNumber);
  }
}

function expireMessages(queue) {
  if (queue.isDeadLetterQueue) return;
  const now = Date.now();
  for (const msg of queue.messages.values()) {
    if (msg.state === 'active' && msg.expiresAt <= now) expire(queue, msg);
  }
}

function pump(queue) {
  if (!queue) return;
  expireMessages(queue);
  for (const link of queue.receivers) {
    if (!link.is_open()) continue;
    const st = linkState(link);
    const settledMode = link.remote.attach && link.remote.attach.snd_settle_mode === 1;
    for (const msg of queue.messages.values()) {
      if (effectiveCredit(link) <= 0) break;
      if (!isDeliverableTo(queue, msg, link)) continue;
      if (settledMode) {
        // receive-and-delete: the message leaves the queue as it is sent
        const payload = msg.encode();
        queue.messages.delete(msg.sequenceNumber);
        const d = link.send(payload, crypto.randomBytes(16), 0);
        d.settled = true;
        st.inflight.push(d);
        continue;
      }
      lock(queue, msg, link);
      if (st.session) renewSession(queue, st.session, link);
      const tag = options.shortTags.has(queue.name) ? crypto.randomBytes(8) : dotnetOrder(msg.lockToken);
      const d = link.send(msg.encode(), tag, 0);
      d.sbMessage = msg;
      msg.delivery = d;
      st.inflight.push(d);
    }
    if (st.drainPending || link._draining) {
      st.drainPending = false;
      link.set_drained(true);
    }
  }
  if (waitingForSession.size) serveWaitingSessionReceivers(queue);
}

// ---------------------------------------------------------------------------------------------
// Sessions
function renewSession(queue, session, link) {
  session.lockedBy = link;
  session.lockedUntil = Date.now() + queue.lockDurationMs;
  if (session.timer) clearTimeout(session.timer);
  session.timer = setTimeout(() => {
    if (session.lockedBy !== link) return;
    log(`session lock expired: ${queue.name}/${session.id}`);
    unlockSession(queue, session);
    if (link.is_open()) {
      link.close({ condition: 'com.microsoft:session-lock-lost', description: `The session lock has expired on the session with id ${session.id}.` });
    }
  }, queue.lockDurationMs + 1);
}

function unlockSession(queue, session) {
  if (session.timer) clearTimeout(session.timer);
  session.timer = null;
  const holder = session.lockedBy;
  session.lockedBy = null;
  session.lockedUntil = 0;
  if (holder) {
    for (const msg of queue.messages.values()) {
      if (msg.state === 'locked' && msg.lockedBy === holder && msg.sessionId === session.id) release(queue, msg, true);
    }
  }
  pump(queue);
}

function sessionIsFree(session) {
  return !session.lockedBy || !session.lockedBy.is_open();
}

function nextAvailableSession(queue) {
  for (const msg of queue.messages.values()) {
    if (msg.state !== 'active' || msg.sessionId === null) continue;
    const s = queue.session(msg.sessionId);
    if (sessionIsFree(s)) return s;
  }
  return null;
}

// Session receivers waiting for "next available" (attach not yet answered).
const waitingForSession = new Set();

function grantSession(queue, link, session, requestedFilter) {
  const st = linkState(link);
  st.session = session;
  renewSession(queue, session, link);
  const source = Object.assign({}, link.remote.attach.source || {});
  source.address = queue.name;
  source.filter = { [SESSION_FILTER]: session.id };
  link.set_source(source);
  link.local.attach.properties = Object.assign({}, link.local.attach.properties || {}, {
    [LOCKED_UNTIL_UTC]: types.wrap_long(ticksBuffer(session.lockedUntil)),
  });
  void requestedFilter;
}

function serveWaitingSessionReceivers(queue) {
  for (const w of [...waitingForSession]) {
    if (w.queue !== queue) continue;
    const s = nextAvailableSession(queue);
    if (!s) return;
    waitingForSession.delete(w);
    clearTimeout(w.timer);
    if (w.link.is_closed()) continue;
    grantSession(queue, w.link, s);
    w.link.open();
    queue.receivers.add(w.link);
    process.nextTick(() => pump(queue));
  }
}

// Holds back the attach rhea already queued so that it can be answered later.
function holdAttach(link) {
  link.state.local_open = false;
  link.state.open_requests = Math.max(0, link.state.open_requests - 1);
}

function refuseAttach(link, condition, description) {
  // The service answers the attach (with no terminus) and detaches at once with the error.
  link.set_source(null);
  link.set_target(null);
  link.close({ condition, description });
}

// ---------------------------------------------------------------------------------------------
// Claims-based security ($cbs)
function verifyToken(body, type, expiration) {
  if (type === 'jwt') return verifyJwt(body, expiration);
  const token = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : '';
  if (!token.startsWith('SharedAccessSignature ')) return { ok: false, why: 'not a SharedAccessSignature' };
  const fields = {};
  for (const kv of token.slice('SharedAccessSignature '.length).split('&')) {
    const i = kv.indexOf('=');
    if (i > 0) fields[kv.slice(0, i)] = kv.slice(i + 1);
  }
  for (const f of ['sr', 'sig', 'se', 'skn']) if (!fields[f]) return { ok: false, why: `token lacks ${f}` };
  const expiry = Number(fields.se);
  if (!(expiry * 1000 > Date.now())) return { ok: false, why: 'token expired' };
  if (options.maxTokenLifetimeMs > 0 && expiry * 1000 - Date.now() > options.maxTokenLifetimeMs) {
    return { ok: false, why: `token lives longer than ${options.maxTokenLifetimeMs} ms` };
  }
  if (options.sasKey) {
    if (fields.skn !== options.sasKeyName) return { ok: false, why: 'unknown key name' };
    const expected = crypto.createHmac('sha256', options.sasKey)
      .update(fields.sr + '\n' + fields.se).digest('base64');
    if (decodeURIComponent(fields.sig) !== expected) return { ok: false, why: 'signature mismatch' };
  }
  return { ok: true, audience: decodeURIComponent(fields.sr), expiresAt: expiry * 1000 };
}

// The service validates an Azure AD token's signature, audience and expiry; the peer compares it
// with the tokens it was told to accept and keeps the claim until the put-token's expiration.
function verifyJwt(body, expiration) {
  const token = typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : '';
  if (!token) return { ok: false, why: 'empty jwt' };
  if (options.jwts.size > 0 && !options.jwts.has(token)) return { ok: false, why: 'jwt not accepted' };
  const expiresAt = expiration instanceof Date ? expiration.getTime() : Number(expiration);
  if (Number.isFinite(expiresAt) && expiresAt > 0) {
    if (expiresAt <= Date.now()) return { ok: false, why: 'jwt expired' };
    return { ok: true, audience: '', expiresAt };
  }
  return { ok: true, audience: '' };
}

function audiencePath(audience) {
  const m = /^[a-z]+:\/\/[^/]+\/?(.*)$/i.exec(audience || '');
  return (m ? m[1] : audience || '').replace(/\/+$/, '').toLowerCase();
}

function authorized(connection, entity) {
  const claims = connection.sbClaims || [];
  const path = entity.toLowerCase();
  const now = Date.now();
  return claims.some((c) => c.expiresAt > now && (c.path === '' || path === c.path || path.startsWith(c.path + '/')));
}

function handleCbs(context, request) {
  const props = request.application_properties || {};
  if (props.operation !== 'put-token') return respond(context, request, 400, 'unsupported cbs operation');
  const verdict = verifyToken(request.body, String(props.type || ''), props.expiration);
  if (!verdict.ok) return respond(context, request, 401, `put-token refused: ${verdict.why}`);
  const name = String(props.name || verdict.audience);
  const connection = context.connection;
  connection.sbClaims = connection.sbClaims || [];
  connection.sbClaims.push({ path: audiencePath(name), expiresAt: verdict.expiresAt || Date.now() + 3600e3 });
  return respond(context, request, 202, 'Accepted');
}

// ---------------------------------------------------------------------------------------------
// Request/response plumbing: replies go to the link whose remote target (or name) is reply_to.
function replyLink(connection, replyTo) {
  const links = connection.sbReplyLinks || new Map();
  return links.get(String(replyTo));
}

// $cbs answers with `status-code`/`status-description`; $management (like the service) with
// `statusCode`/`statusDescription` and, on failure, `errorCondition`.
function respond(context, request, status, description, body, condition) {
  const link = replyLink(context.connection, request.reply_to);
  const cbs = linkState(context.receiver).entity === '$cbs';
  const reply = {
    correlation_id: request.message_id,
    application_properties: cbs
      ? { 'status-code': status, 'status-description': description || '' }
      : { statusCode: status, statusDescription: description || '' },
  };
  if (status >= 400) reply.application_properties[cbs ? 'error-condition' : 'errorCondition'] = types.wrap_symbol(condition || conditionFor(status, description));
  if (body !== undefined) reply.body = body;
  if (!link) {
    log(`no reply link for ${request.reply_to}`);
    return;
  }
  const send = () => link.send(reply);
  if (link.sendable()) send();
  else (link.sbBacklog = link.sbBacklog || []).push(send);
}

function conditionFor(status, description) {
  if (status === 401) return 'amqp:unauthorized-access';
  if (status === 404) {
    if (/^message with sequence number/.test(description || '')) return 'com.microsoft:message-not-found';
    return 'amqp:not-found';
  }
  if (status === 410) return /^session/i.test(description || '') ? 'com.microsoft:session-lock-lost' : 'com.microsoft:message-lock-lost';
  if (status === 400) return 'amqp:invalid-field';
  return 'amqp:internal-error';
}

// ---------------------------------------------------------------------------------------------
// $management
function mapValue(body, key) {
  if (body && typeof body === 'object' && !Buffer.isBuffer(body)) return body[key];
  return undefined;
}
function sequenceNumbersOf(v) {
  const list = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return list.map(readLong);
}
function lockTokensOf(v) {
  const list = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return list.map((t) => (Buffer.isBuffer(t) ? t : Buffer.from(String(t).replace(/-/g, ''), 'hex')));
}
function findByLockToken(queue, token) {
  const key = uuidKey(token);
  for (const msg of queue.messages.values()) {
    if (msg.state === 'locked' && msg.lockToken && uuidKey(msg.lockToken) === key) return msg;
  }
  return null;
}
function encodedEntry(msg, extra) {
  return types.wrap_map(Object.assign({ message: types.wrap_binary(msg.encode()) }, extra || {}));
}

function handleManagement(context, queue, request) {
  if (queue && options.dropOnManagement.has(queue.name)) {
    if (context.connection.socket) context.connection.socket.destroy();
    return;
  }
  if (queue && options.detachManagement.has(queue.name)) {
    context.receiver.close({ condition: options.cutCondition, description: 'the peer detached the $management link (test hook)' });
    return;
  }
  if (queue && options.garbageReplies.has(queue.name)) {
    const link = replyLink(context.connection, request.reply_to);
    if (link) link.send(Buffer.from([0x00, 0x53, 0x77, 0xa1, 0xff, 0x78]), crypto.randomBytes(16), 0);
    return;
  }
  if (queue && options.hugeReplies.has(queue.name)) {
    // A reply past any sane size (65 MiB of a body that never ends), ignoring the
    // max-message-size the client announced on its reply link, as a hostile service would.
    const link = replyLink(context.connection, request.reply_to);
    if (link) link.send(Buffer.alloc(65 << 20, 0x40), crypto.randomBytes(16), 0);
    return;
  }
  const props = request.application_properties || {};
  const op = String(props.operation || '');
  const body = request.body;
  switch (op) {
    case 'com.microsoft:renew-lock': {
      const expirations = [];
      for (const token of lockTokensOf(mapValue(body, 'lock-tokens'))) {
        const msg = findByLockToken(queue, token);
        if (!msg) return respond(context, request, 410, 'The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.');
        armLockTimer(queue, msg);
        expirations.push(new Date(msg.lockedUntil));
      }
      return respond(context, request, 200, 'OK', { expirations: types.wrap_array(expirations.map((d) => d.getTime()), 0x83) });
    }
    case 'com.microsoft:peek-message': {
      const from = readLong(mapValue(body, 'from-sequence-number') ?? 1);
      const count = Number(mapValue(body, 'message-count') ?? 1);
      const sessionId = mapValue(body, 'session-id');
      const found = [];
      for (const msg of queue.messages.values()) {
        if (found.length >= count) break;
        if (msg.sequenceNumber < from) continue;
        if (sessionId !== undefined && sessionId !== null && msg.sessionId !== String(sessionId)) continue;
        found.push(msg);
      }
      if (!found.length) return respond(context, request, 204, 'No messages');
      return respond(context, request, 200, 'OK', { messages: found.map((m) => encodedEntry(m)) });
    }
    case 'com.microsoft:schedule-message': {
      const entries = mapValue(body, 'messages') || [];
      const sequenceNumbers = [];
      for (const entry of entries) {
        const raw = entry.message;
        const msg = new StoredMessage(Buffer.from(raw));
        if (!msg.scheduledTime) msg.scheduledTime = Date.now();
        sequenceNumbers.push(queue.enqueue(msg));
      }
      pump(queue);
      return respond(context, request, 200, 'OK', {
        'sequence-numbers': types.wrap_array(sequenceNumbers.map(longBuffer), 0x81),
      });
    }
    case 'com.microsoft:cancel-scheduled-message': {
      for (const seq of sequenceNumbersOf(mapValue(body, 'sequence-numbers'))) {
        const msg = queue.messages.get(seq);
        if (msg && msg.state === 'scheduled') {
          if (msg.scheduleTimer) clearTimeout(msg.scheduleTimer);
          queue.messages.delete(seq);
        }
      }
      return respond(context, request, 200, 'OK', {});
    }
    case 'com.microsoft:receive-by-sequence-number': {
      const found = [];
      const sessionId = mapValue(body, 'session-id');
      for (const seq of sequenceNumbersOf(mapValue(body, 'sequence-numbers'))) {
        const msg = queue.messages.get(seq);
        if (!msg || msg.state !== 'deferred' || (sessionId != null && msg.sessionId !== String(sessionId))) {
          return respond(context, request, 404, `message with sequence number ${seq} not found`);
        }
        found.push(msg);
      }
      const settleMode = Number(mapValue(body, 'receiver-settle-mode') ?? 1);
      const entries = [];
      for (const msg of found) {
        if (settleMode === 0) {
          entries.push(encodedEntry(msg));
          complete(queue, msg);
          continue;
        }
        lock(queue, msg, null);
        msg.wasDeferred = true;
        entries.push(encodedEntry(msg, { 'lock-token': types.wrap_uuid(msg.lockToken) }));
      }
      return respond(context, request, 200, 'OK', { messages: entries });
    }
    case 'com.microsoft:update-disposition': {
      const status = String(mapValue(body, 'disposition-status') || '');
      for (const token of lockTokensOf(mapValue(body, 'lock-tokens'))) {
        const msg = findByLockToken(queue, token);
        if (!msg) return respond(context, request, 410, 'The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.');
        const toModify = mapValue(body, 'properties-to-modify');
        if (status === 'completed') complete(queue, msg);
        else if (status === 'abandoned') {
          release(queue, msg, true, toModify);
        } else if (status === 'defered') defer(queue, msg, toModify);
        else if (status === 'suspended') {
          deadLetter(queue, msg, mapValue(body, 'deadletter-reason'), mapValue(body, 'deadletter-description'));
        } else return respond(context, request, 400, `unknown disposition-status '${status}'`);
      }
      pump(queue);
      return respond(context, request, 200, 'OK', {});
    }
    case 'com.microsoft:renew-session-lock': {
      const s = queue.sessions.get(String(mapValue(body, 'session-id')));
      if (!s || !s.lockedBy || !s.lockedBy.is_open()) return respond(context, request, 410, 'session lock lost');
      renewSession(queue, s, s.lockedBy);
      return respond(context, request, 200, 'OK', { expiration: new Date(s.lockedUntil) });
    }
    case 'com.microsoft:get-session-state': {
      const s = queue.sessions.get(String(mapValue(body, 'session-id')));
      if (s && s.lockedBy === null) return respond(context, request, 410, 'session lock lost');
      return respond(context, request, 200, 'OK', { 'session-state': s && s.state ? types.wrap_binary(s.state) : null });
    }
    case 'com.microsoft:set-session-state': {
      const s = queue.sessions.get(String(mapValue(body, 'session-id')));
      if (!s || !s.lockedBy) return respond(context, request, 410, 'session lock lost');
      const state = mapValue(body, 'session-state');
      s.state = state === null || state === undefined ? null : Buffer.from(state);
      return respond(context, request, 200, 'OK', {});
    }
    case 'com.microsoft:get-message-sessions': {
      const ids = [];
      for (const s of queue.sessions.values()) {
        const hasMessages = [...queue.messages.values()].some((m) => m.sessionId === s.id);
        if (hasMessages || s.state) ids.push(s.id);
      }
      const skip = Number(mapValue(body, 'skip') ?? 0);
      const top = Number(mapValue(body, 'top') ?? ids.length);
      const page = ids.slice(skip, skip + top);
      if (!page.length) return respond(context, request, 204, 'No sessions');
      return respond(context, request, 200, 'OK', { skip: types.wrap_int(skip + page.length), 'sessions-ids': page });
    }
    case 'com.microsoft:add-rule':
    case 'com.microsoft:remove-rule':
    case 'com.microsoft:enumerate-rules':
      return handleRules(context, queue, request, op, body);
    default:
      return respond(context, request, 501, `operation '${op}' is not implemented by the test peer`);
  }
}

function handleRules(context, queue, request, op, body) {
  const sub = queue.subscription;
  if (!sub || queue.isDeadLetterQueue) {
    return respond(context, request, 400, `'${queue.name}' is not a subscription: rules exist only on subscriptions`);
  }
  if (op === 'com.microsoft:enumerate-rules') {
    const skip = Number(mapValue(body, 'skip') ?? 0);
    const top = Number(mapValue(body, 'top') ?? sub.rules.size);
    const page = [...sub.rules.values()].slice(skip, skip + top);
    if (!page.length) return respond(context, request, 204, 'No rules');
    return respond(context, request, 200, 'OK', { rules: page.map(describeRule) });
  }
  const name = String(mapValue(body, 'rule-name') ?? '');
  if (!name || name.length > 50) return respond(context, request, 400, 'rule-name must be 1-50 characters');
  if (op === 'com.microsoft:remove-rule') {
    if (!sub.rules.delete(name)) {
      return respond(context, request, 404, `The rule '${name}' of '${queue.name}' could not be found.`);
    }
    return respond(context, request, 200, 'OK', {});
  }
  if (sub.rules.has(name)) {
    return respond(context, request, 409, `The rule '${name}' of '${queue.name}' already exists.`, undefined,
      'com.microsoft:entity-already-exists');
  }
  const filter = filterFromDescription(mapValue(body, 'rule-description'));
  if (typeof filter === 'string') return respond(context, request, 400, filter);
  sub.rules.set(name, { name, filter, createdAt: Date.now() });
  return respond(context, request, 200, 'OK', {});
}

function removeSubscription(sub) {
  sub.topic.subscriptions.delete(sub.name);
  queues.delete(sub.queue.name);
  detachAll(sub.queue, sub.queue.name);
}

function handleAdmin(context, request) {
  const props = request.application_properties || {};
  const body = request.body || {};
  // The entity: `queue`, or `topic` for the topic operations (a subscription's name is in
  // `subscription`).
  const name = String(props.queue || props.topic || body.queue || '');
  switch (props.operation) {
    case 'create-queue': {
      const existing = queues.get(name);
      if (existing) return respond(context, request, 409, `queue '${name}' exists`);
      queues.set(name, new Queue(name, {
        lockDurationMs: body['lock-duration-ms'] !== undefined ? Number(body['lock-duration-ms']) : undefined,
        maxDeliveryCount: body['max-delivery-count'] !== undefined ? Number(body['max-delivery-count']) : undefined,
        requiresSession: body['requires-session'] !== undefined ? Boolean(body['requires-session']) : undefined,
        deadLetterOnExpiration: body['dead-letter-on-expiration'] !== undefined ? Boolean(body['dead-letter-on-expiration']) : undefined,
      }));
      return respond(context, request, 201, 'Created', {});
    }
    case 'delete-queue':
      if (!queues.delete(name)) return respond(context, request, 404, `queue '${name}' not found`);
      return respond(context, request, 200, 'OK', {});
    case 'queue-stats': {
      const q = queueFor(name, false);
      if (!q) return respond(context, request, 404, `queue '${name}' not found`);
      return respond(context, request, 200, 'OK', q.counts());
    }
    case 'create-topic': {
      if (topics.has(name) || queues.has(name)) return respond(context, request, 409, `entity '${name}' exists`);
      topics.set(name, { name, subscriptions: new Map() });
      return respond(context, request, 201, 'Created', {});
    }
    case 'delete-topic': {
      const topic = topics.get(name);
      if (!topic) return respond(context, request, 404, `topic '${name}' not found`);
      for (const sub of topic.subscriptions.values()) removeSubscription(sub);
      topics.delete(name);
      return respond(context, request, 200, 'OK', {});
    }
    case 'create-subscription': {
      const topic = topics.get(name);
      const subName = String(props.subscription || '');
      if (!topic) return respond(context, request, 404, `topic '${name}' not found`);
      if (!subName) return respond(context, request, 400, 'create-subscription needs a subscription name');
      if (topic.subscriptions.has(subName)) return respond(context, request, 409, `subscription '${subName}' of '${name}' exists`);
      const sub = new Subscription(topic, subName, {
        lockDurationMs: body['lock-duration-ms'] !== undefined ? Number(body['lock-duration-ms']) : undefined,
        maxDeliveryCount: body['max-delivery-count'] !== undefined ? Number(body['max-delivery-count']) : undefined,
        requiresSession: body['requires-session'] !== undefined ? Boolean(body['requires-session']) : false,
        deadLetterOnExpiration: body['dead-letter-on-expiration'] !== undefined ? Boolean(body['dead-letter-on-expiration']) : undefined,
      });
      topic.subscriptions.set(subName, sub);
      queues.set(sub.queue.name, sub.queue);
      return respond(context, request, 201, 'Created', {});
    }
    case 'delete-subscription': {
      const topic = topics.get(name);
      if (!topic) return respond(context, request, 404, `topic '${name}' not found`);
      const sub = topic.subscriptions.get(String(props.subscription || ''));
      if (!sub) return respond(context, request, 404, `subscription '${props.subscription}' of '${name}' not found`);
      removeSubscription(sub);
      return respond(context, request, 200, 'OK', {});
    }
    case 'list-subscriptions': {
      const topic = topics.get(name);
      if (!topic) return respond(context, request, 404, `topic '${name}' not found`);
      return respond(context, request, 200, 'OK', { subscriptions: [...topic.subscriptions.keys()].sort() });
    }
    case 'reset':
      queues.clear();
      topics.clear();
      return respond(context, request, 200, 'OK', {});
    default:
      return respond(context, request, 400, `unknown admin operation '${props.operation}'`);
  }
}

// ---------------------------------------------------------------------------------------------
// Links
const container = rhea.create_container({
  id: 'servicebus-test-peer',
  autoaccept: false,
  treat_modified_as_released: false,
});
container.sasl_server_mechanisms.enable_anonymous();
container.sasl_server_mechanisms.enable_plain(() => true);

function notFound(context, entity) {
  return `The messaging entity 'sb://${context.connection.options.hostname || '127.0.0.1'}/${entity}' could not be found.`;
}
for (const name of options.queues) queues.set(name, new Queue(name));

function isNode(entity) {
  return entity === '$cbs' || entity === '$peer-admin' || entity.endsWith(MGMT_SUFFIX);
}

container.on('receiver_open', (context) => {
  // The client sends to us: a queue, $cbs, <q>/$management or $peer-admin.
  const link = context.receiver;
  const target = link.remote.attach.target || {};
  const entity = entityOf(target.address);
  link.set_target({ address: target.address });
  link.local.attach.max_message_size = options.maxMessageSize;
  const st = linkState(link);
  st.entity = entity;
  if (!entity) return refuseAttach(link, 'amqp:invalid-field', 'the target address is empty');
  if (!isNode(entity) && !authorized(context.connection, entity)) {
    return refuseAttach(link, 'amqp:unauthorized-access', `Unauthorized access. 'Send' claim(s) are required to perform this operation. Resource: '${entity}'.`);
  }
  if (entity.endsWith(MGMT_SUFFIX) && !authorized(context.connection, entity)) {
    return refuseAttach(link, 'amqp:unauthorized-access', `Unauthorized access to '${entity}'.`);
  }
  if (!isNode(entity)) {
    if (entity.endsWith(DLQ_SUFFIX)) return refuseAttach(link, 'amqp:not-allowed', 'cannot send to a dead-letter queue');
    if (topics.has(entity)) {
      st.topic = topics.get(entity);
      link.add_credit(1000);
      return;
    }
    if (entity.includes(SUBSCRIPTIONS_INFIX)) {
      return refuseAttach(link, 'amqp:not-allowed', `cannot send to the subscription '${entity}': send to its topic`);
    }
    st.queue = queueFor(entity, !options.requireCreated);
    if (!st.queue) return refuseAttach(link, 'amqp:not-found', notFound(context, entity));
  }
  link.add_credit(1000);
});

container.on('sender_open', (context) => {
  // The client receives from us: a queue, its DLQ, or the reply side of a request/response node.
  const link = context.sender;
  const remote = link.remote.attach;
  const source = remote.source || {};
  const entity = entityOf(source.address);
  const st = linkState(link);
  const replyAddress = remote.target && remote.target.address ? String(remote.target.address) : link.name;
  if (isNode(entity)) {
    if (entity !== '$cbs' && entity !== '$peer-admin' && !authorized(context.connection, entity)) {
      return refuseAttach(link, 'amqp:unauthorized-access', `Unauthorized access to '${entity}'.`);
    }
    link.set_source({ address: source.address });
    const replies = (context.connection.sbReplyLinks = context.connection.sbReplyLinks || new Map());
    replies.set(replyAddress, link);
    replies.set(link.name, link);
    return;
  }
  if (!authorized(context.connection, entity)) {
    return refuseAttach(link, 'amqp:unauthorized-access', `Unauthorized access. 'Listen' claim(s) are required to perform this operation. Resource: '${entity}'.`);
  }
  const queue = queueFor(entity, !options.requireCreated);
  if (!queue) return refuseAttach(link, 'amqp:not-found', notFound(context, entity));
  st.queue = queue;
  // Like the service: take the receiver's settle mode (peek-lock receivers ask for "second":
  // their outcomes are confirmed by a settled disposition, see onOutcome).
  link.local.attach.rcv_settle_mode = remote.rcv_settle_mode || 0;
  const filter = source.filter || {};
  const wantsSession = Object.prototype.hasOwnProperty.call(filter, SESSION_FILTER);
  if (!wantsSession) {
    if (queue.requiresSession) {
      return refuseAttach(link, 'amqp:not-allowed', `It is not possible for an entity that requires sessions to create a non-sessionful message receiver. Path: ${entity}`);
    }
    link.set_source({ address: source.address });
    queue.receivers.add(link);
    return;
  }
  const requested = filter[SESSION_FILTER];
  if (requested !== null && requested !== undefined) {
    const session = queue.session(String(requested));
    if (!sessionIsFree(session)) {
      return refuseAttach(link, 'com.microsoft:session-cannot-be-locked',
        `The requested session '${session.id}' cannot be accepted. It may be locked by another receiver.`);
    }
    grantSession(queue, link, session);
    queue.receivers.add(link);
    return;
  }
  const available = nextAvailableSession(queue);
  if (available) {
    grantSession(queue, link, available);
    queue.receivers.add(link);
    return;
  }
  // Nobody to give yet: answer when a session with messages appears, or time out.
  const props = remote.properties || {};
  const waitMs = Math.max(0, Math.min(Number(props[TIMEOUT_PROP] ?? 60000), 600000));
  holdAttach(link);
  const waiter = { queue, link };
  waiter.timer = setTimeout(() => {
    waitingForSession.delete(waiter);
    if (link.is_closed()) return;
    link.open();
    refuseAttach(link, 'com.microsoft:timeout', 'The operation did not complete within the allotted timeout: no unlocked session is available.');
  }, waitMs);
  waitingForSession.add(waiter);
});

function forgetLink(link) {
  const st = link.sb;
  if (!st || !st.queue) return;
  const queue = st.queue;
  if (queue.receivers.delete(link)) {
    // Locks held through this link die with it: the messages become available again.
    for (const msg of queue.messages.values()) {
      if (msg.state === 'locked' && msg.lockedBy === link) release(queue, msg, true);
    }
    if (st.session && st.session.lockedBy === link) unlockSession(queue, st.session);
    pump(queue);
  }
  for (const w of waitingForSession) {
    if (w.link === link) {
      clearTimeout(w.timer);
      waitingForSession.delete(w);
    }
  }
}

// Dispositions that arrived before the detach are dispatched by rhea on the next tick: settle
// them first, then release what the link still holds.
container.on('sender_close', (context) => setImmediate(() => forgetLink(context.sender)));
container.on('receiver_close', () => {});
container.on('disconnected', (context) => {
  const session_links = [];
  for (const q of queues.values()) {
    for (const candidate of [q, q.deadLetters].filter(Boolean)) {
      for (const link of candidate.receivers) if (link.connection === context.connection) session_links.push(link);
    }
  }
  setImmediate(() => session_links.forEach(forgetLink));
  for (const w of [...waitingForSession]) {
    if (w.link.connection === context.connection) {
      clearTimeout(w.timer);
      waitingForSession.delete(w);
    }
  }
});
container.on('connection_close', (context) => {
  container.emit('disconnected', context);
});
container.on('error', (err) => log('error', err && err.message));

container.on('sendable', (context) => {
  const link = context.sender;
  if (link.sbBacklog && link.sbBacklog.length) {
    const backlog = link.sbBacklog;
    link.sbBacklog = [];
    backlog.forEach((f) => f());
  }
  const st = link.sb;
  if (st && st.queue) pump(st.queue);
});
container.on('sender_draining', (context) => {
  const st = linkState(context.sender);
  st.drainPending = true;
  if (st.queue) pump(st.queue);
  else context.sender.set_drained(true);
});
container.on('sender_flow', (context) => {
  const st = context.sender.sb;
  if (st && st.queue) pump(st.queue);
});

// Outcomes from receivers (rcv-settle-mode second: answer with a settled disposition).
function onOutcome(context) {
  const d = context.delivery;
  const msg = d.sbMessage;
  if (!msg) return;
  const link = context.sender;
  const queue = linkState(link).queue;
  if (queue && options.holdSettlements.has(queue.name)) return;
  const outcome = d.remote_state;
  let error = null;
  if (msg.delivery !== d || msg.state !== 'locked') {
    error = { condition: 'com.microsoft:message-lock-lost', description: 'The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.' };
  } else {
    error = applyOutcome(queue, msg, outcome);
  }
  d.sbMessage = null;
  if (queue && options.detachOnSettlement.has(queue.name)) {
    link.close({ condition: options.cutCondition, description: 'the peer detached the receiver link after applying the outcome (test hook)' });
    return;
  }
  if (!d.remote_settled) {
    // The service settles with the outcome the receiver chose, without an error (a rejected
    // outcome's dead-letter condition is not echoed: the SDK would take it as a failure).
    if (error) d.update(true, amqpMessage.rejected({ error }).described());
    else if (outcome && outcome.constructor.composite_type === 'rejected') d.update(true, amqpMessage.rejected().described());
    else d.update(true, outcome && outcome.described ? outcome.described() : undefined);
    // With rcv-settle-mode second the receiver settles once we have, without telling us again:
    // the delivery is finished here (else rhea keeps it and its session runs out of slots).
    d.remote_settled = true;
  }
  pump(queue);
}
for (const ev of ['accepted', 'rejected', 'modified', 'released']) container.on(ev, onOutcome);
container.on('settled', (context) => {
  // A delivery settled without outcome (e.g. the link went away): release its lock.
  const d = context.delivery;
  if (d && d.sbMessage && context.sender) onOutcome(context);
});

// Transfers from senders.
container.on('message', (context) => {
  const link = context.receiver;
  const st = linkState(link);
  const delivery = context.delivery;
  const request = context.message;
  const accept = () => delivery.update(true, amqpMessage.accepted().described());
  const reject = (condition, description) => delivery.update(true, amqpMessage.rejected({ error: { condition, description } }).described());
  try {
    if (st.entity === '$cbs') return accept(), handleCbs(context, request);
    // Requests are answered after rhea has dispatched the dispositions read before them (it
    // does that on the next tick): frames of one connection take effect in order, so a peek
    // after a complete does not see the completed message.
    if (st.entity === '$peer-admin') return accept(), setImmediate(() => handleAdmin(context, request));
    if (st.entity.endsWith(MGMT_SUFFIX)) {
      accept();
      const entity = st.entity.slice(0, -MGMT_SUFFIX.length);
      return setImmediate(() => {
        const queue = queueFor(entity, !options.requireCreated);
        if (!queue) return respond(context, request, 404, notFound(context, entity));
        return handleManagement(context, queue, request);
      });
    }
    const queue = st.queue;
    const raw = context.format === BATCH_FORMAT ? context.message : null;
    let payloads;
    if (context.format === BATCH_FORMAT) {
      // A batch: the body is a run of data sections, each one a complete encoded message.
      payloads = splitSections(raw).filter((s) => s.code === 0x75).map((s) => Buffer.from(s.typed.value.value ?? s.typed.value));
    } else if (!context.format) {
      payloads = [rawOf(delivery, request)];
    } else {
      return reject('amqp:not-implemented', `message format ${context.format} is not supported`);
    }
    const messages = payloads.map((p) => new StoredMessage(p));
    const total = payloads.reduce((n, p) => n + p.length, 0);
    if (total > options.maxMessageSize) {
      return reject('amqp:link:message-size-exceeded', `The received message (size ${total}) exceeds the limit (${options.maxMessageSize}) currently allowed on the link.`);
    }
    if (st.topic) {
      // A topic deleted after the sender attached: the service detaches it; refuse the transfer.
      if (topics.get(st.topic.name) !== st.topic) return reject('amqp:not-found', notFound(context, st.topic.name));
      publish(st.topic, payloads);
      return accept();
    }
    if (queue.requiresSession && messages.some((m) => m.sessionId === null)) {
      return reject('amqp:not-allowed', `The SessionId was not set on a message, and it cannot be sent to the entity. Entity: ${queue.name}`);
    }
    for (const m of messages) queue.enqueue(m);
    if (options.detachOnSend.has(queue.name)) {
      link.close({ condition: options.cutCondition, description: 'the peer detached the sender link after storing the message (test hook)' });
      pump(queue);
      return;
    }
    accept();
    pump(queue);
    serveWaitingSessionReceivers(queue);
  } catch (e) {
    log('bad transfer:', e && e.stack);
    reject('amqp:decode-error', String(e && e.message));
  }
});

// rhea hands format-0 messages over decoded; keep the bytes by capturing them at decode time.
const originalDecode = amqpMessage.decode;
let lastDecoded = null;
amqpMessage.decode = function (buffer) {
  const m = originalDecode(buffer);
  lastDecoded = { message: m, raw: buffer };
  return m;
};
function rawOf(delivery, message) {
  if (lastDecoded && lastDecoded.message === message) return Buffer.from(lastDecoded.raw);
  return amqpMessage.encode(message);
}

// Scheduled messages and timed-out session waits rely on timers; a periodic sweep also expires
// messages whose TTL ran out while nobody was receiving.
setInterval(() => {
  for (const q of queues.values()) {
    expireMessages(q);
    serveWaitingSessionReceivers(q);
  }
}, 250).unref();

const listener = container.listen({ port: options.port, host: '127.0.0.1' });
// No Nagle: a settled disposition answering a client's outcome is a small frame sent right after
// the client's own; with Nagle and the client's delayed ACK it would wait ~40 ms (the service
// answers at once).
//
// rhea writes every frame with a socket write of its own, so a batch of 50 outcomes read in one
// segment was answered in 50 segments, and the client woke once per confirmation. The service's
// AMQP stack buffers what it writes; so does the peer now: the frames written while handling one
// turn of the event loop go out together once that turn's callbacks are done (setImmediate runs
// after the I/O callbacks and every process.nextTick of the turn).
function coalesceWrites(socket) {
  let flushQueued = false;
  const write = socket.write;
  socket.write = function (...rest) {
    if (!flushQueued && !socket.destroyed) {
      flushQueued = true;
      socket.cork();
      setImmediate(() => {
        flushQueued = false;
        socket.uncork();
      });
    }
    return write.apply(this, rest);
  };
}
listener.on('connection', (socket) => {
  socket.setNoDelay(true);
  coalesceWrites(socket);
});
listener.on('listening', () => {
  process.stdout.write(JSON.stringify({ port: listener.address().port }) + '\n');
});
listener.on('error', (e) => {
  console.error('[sb-peer] listen failed:', e.message);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
// With --exit-with-stdin, a parent that dies without stopping us does not leave the peer behind.
if (args.includes('--exit-with-stdin')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
