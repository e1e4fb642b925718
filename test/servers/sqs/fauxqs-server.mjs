// Starts fauxqs on 127.0.0.1 for qrt's tests and prints "PORT <n>" once it answers.
//   node fauxqs-server.mjs [port] [dataDir]
// port 0 (default) lets the kernel pick one. With a dataDir, queues and messages survive a
// restart (the recovery test kills this process and starts it again on the same port).
// Exits when stdin closes, so a crashed test harness never leaks the server.
import net from "node:net";

// fauxqs listens on 0.0.0.0 whatever it is asked: force loopback before it is loaded.
const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args.length > 0 && typeof args[0] === "object" && args[0] !== null) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (typeof args[0] === "number" || typeof args[0] === "string") {
    const port = args[0];
    const rest = args.slice(1).filter((a) => typeof a === "function");
    return originalListen.call(this, { port: Number(port), host: "127.0.0.1" }, ...rest);
  }
  return originalListen.apply(this, args);
};

const { startFauxqs } = await import("fauxqs");
const port = Number(process.argv[2] ?? 0);
const dataDir = process.argv[3];
const server = await startFauxqs({ port, logger: false, host: "127.0.0.1", ...(dataDir ? { dataDir } : {}) });
process.stdout.write(`PORT ${server.port}\n`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await server.stop().catch(() => {});
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
