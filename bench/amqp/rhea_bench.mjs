// rhea's half of the AMQP benchmark (rhea: an independent AMQP 1.0 client in pure JavaScript),
// the same workload as qrt_amqp_bench on the same broker: send COUNT messages of SIZE bytes as
// data sections, at most 100 unsettled (each 100 accepted before the next 100 go), then receive
// with a credit window of 50 and accept each message. Prints one JSON line: messages/s and this
// process's user and system CPU time per message, for each phase.
//   QRT_RHEA_DIR=test/servers/servicebus node rhea_bench.mjs PORT QUEUE [COUNT=20000] [SIZE=256]
// rhea is installed, pinned by its lock file, with the Service Bus test peer.
import { createRequire } from "node:module";
const require = createRequire(`${process.env.QRT_RHEA_DIR}/package.json`);
const rhea = require("rhea");

const [port, queue, countArg = "20000", sizeArg = "256"] = process.argv.slice(2);
const count = Number(countArg);
const body = rhea.message.data_section(Buffer.alloc(Number(sizeArg), "x"));
const address = `/amq/queue/${queue}`;

const connection = rhea.create_container().connect({
  host: "127.0.0.1", port: Number(port), username: "guest", password: "guest",
  hostname: "vhost:/", reconnect: false,
});
const once = (emitter, event) => new Promise((resolve, reject) => {
  emitter.once(event, resolve);
  connection.once("connection_error", (c) => reject(new Error(String(c.connection.error))));
  connection.once("disconnected", (c) => reject(c.error ?? new Error("disconnected")));
});

function cpuPhase(from, seconds, n) {
  const cpu = process.cpuUsage(from);
  const round = (x) => Math.round(x * 100) / 100;
  return { per_s: Math.round(n / seconds), user_us: round(cpu.user / n), system_us: round(cpu.system / n) };
}

// Send: 100 at a time, the next 100 once all of them are accepted.
const sender = connection.open_sender({ target: { address } });
await once(sender, "sendable");
function sendBatch(n) {
  return new Promise((resolve, reject) => {
    let queued = 0, settled = 0;
    const pump = () => { while (queued < n && sender.sendable()) { sender.send({ body }); queued++; } };
    const onAccepted = () => { if (++settled === n) finish(); };
    const onRefused = (c) =>
      finish(new Error(`delivery not accepted: ${JSON.stringify(c.delivery.remote_state)}`));
    const finish = (error) => {
      sender.off("sendable", pump); sender.off("accepted", onAccepted);
      sender.off("rejected", onRefused); sender.off("released", onRefused);
      if (error) reject(error); else resolve();
    };
    sender.on("sendable", pump); sender.on("accepted", onAccepted);
    sender.on("rejected", onRefused); sender.on("released", onRefused);
    pump();
  });
}
// Warm-up, as the other client warms up too: one message sent, received and accepted.
await sendBatch(1);
await new Promise((resolve) => {
  const warm = connection.open_receiver({ source: { address }, autoaccept: false, credit_window: 0 });
  warm.once("message", (context) => {
    context.delivery.accept();
    warm.once("receiver_close", resolve);
    warm.close();
  });
  warm.add_credit(1);
});

let cpu0 = process.cpuUsage();
let t0 = process.hrtime.bigint();
for (let sent = 0; sent < count; sent += 100) await sendBatch(Math.min(100, count - sent));
const send = cpuPhase(cpu0, Number(process.hrtime.bigint() - t0) / 1e9, count);

// Receive: credit window 50, accept each message as it arrives.
cpu0 = process.cpuUsage();
t0 = process.hrtime.bigint();
let received = 0;
await new Promise((resolve) => {
  const receiver = connection.open_receiver({ source: { address }, autoaccept: false, credit_window: 50 });
  receiver.on("message", (context) => {
    context.delivery.accept();
    if (++received === count) resolve();
  });
});
const receive = cpuPhase(cpu0, Number(process.hrtime.bigint() - t0) / 1e9, received);
connection.close();

process.stdout.write(JSON.stringify({
  client: "rhea", count, size: Number(sizeArg), received,
  send_per_s: send.per_s, send_user_us: send.user_us, send_system_us: send.system_us,
  receive_per_s: receive.per_s, receive_user_us: receive.user_us, receive_system_us: receive.system_us,
}) + "\n");
process.exit(0);
