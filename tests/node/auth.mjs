// Socket.IO authentication driven by Node's socket.io-client 4.x, as browser and Node clients do.
//
//   node tests/node/auth.mjs http://127.0.0.1:3001
//
// Registers a user over REST, then authenticates every way the contract allows and checks the
// refusals. Prints one JSON line ({ok, failed, userId, username, checks}) and exits 0 only if every
// check passed. Every wait is bounded by STEP_MS, the whole run by TOTAL_MS.
import { io, Manager } from "socket.io-client";

const base = (process.argv[2] ?? "").replace(/\/$/, "");
if (!base) {
  console.error("usage: node auth.mjs <serverUrl>");
  process.exit(2);
}
const STEP_MS = 5000;
const TOTAL_MS = 30000;
const OPTIONS = { transports: ["websocket"], reconnection: false, forceNew: true };
const sockets = [];
const checks = {};
const report = { ok: false, failed: [], userId: null, username: null, checks };

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  report.ok = report.failed.length === 0 && Object.keys(checks).length === STEPS.length;
  console.log(JSON.stringify(report));
  for (const socket of sockets) socket.disconnect();
  process.exit(report.ok ? 0 : 1);
}

setTimeout(() => {
  report.failed.push({ step: "run", error: `not finished within ${TOTAL_MS} ms` });
  finish();
}, TOTAL_MS);

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

function bounded(promise, what, ms = STEP_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Resolves with the first argument of `event`; listen before the event can fire.
function next(socket, event) {
  return bounded(new Promise((resolve) => socket.once(event, resolve)), `'${event}' on ${socket.nsp}`);
}

// Resolves with the `authenticated` payload; a refusal fails at once instead of waiting out the step.
function signedIn(socket) {
  const refused = new Promise((_, reject) => {
    socket.once("unauthorized", (event) => reject(new Error(`unauthorized on ${socket.nsp}: ${JSON.stringify(event)}`)));
    socket.once("connect_error", (error) => reject(new Error(`connect_error on ${socket.nsp}: ${error.message}`)));
  });
  return Promise.race([next(socket, "authenticated"), refused]);
}

function open(path, options = {}) {
  const socket = io(base + path, { ...OPTIONS, ...options });
  socket.seen = [];
  socket.onAny((event) => socket.seen.push(event));
  for (const event of ["connect", "disconnect", "connect_error"]) socket.on(event, () => socket.seen.push(event));
  sockets.push(socket);
  return socket;
}

let token = null;

const STEPS = [
  [
    "register over REST",
    async () => {
      const username = `node_${Math.random().toString(36).slice(2, 10)}`;
      const response = await bounded(
        fetch(`${base}/api/v1/auth/register`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ username, email: `${username}@example.com`, password: "Passw0rd" }),
        }),
        "register",
      );
      const body = await response.json();
      check(response.status === 201 && body.success === true, `register answered ${response.status}`);
      token = body.data.token;
      report.userId = body.data.user.id;
      report.username = username;
      return { status: response.status };
    },
  ],
  [
    "handshake auth",
    async () => {
      const socket = open("/", { auth: { token } });
      const event = await signedIn(socket);
      check(socket.seen[0] === "connect", `connected before authenticated (saw ${socket.seen})`);
      return { userId: event.user.id };
    },
  ],
  [
    "authenticate event",
    async () => {
      const socket = open("/");
      await next(socket, "connect");
      const refused = await socket.timeout(STEP_MS).emitWithAck("update_status", { status: "busy" });
      check(refused.success === false, "events before authentication are refused");
      const authenticated = signedIn(socket);
      const ack = await bounded(
        new Promise((resolve) => socket.emit("authenticate", { token }, (answer) => resolve(answer))),
        "the authenticate ack",
      );
      const event = await authenticated;
      check(ack.success === true, `authenticate ack ${JSON.stringify(ack)}`);
      return { refusedCode: refused.error.code, ackSuccess: ack.success, ackUserId: ack.data.user.id, userId: event.user.id };
    },
  ],
  [
    "update_status on /status",
    async () => {
      const socket = open("/status", { auth: { token } });
      const event = await signedIn(socket);
      const ack = await socket.timeout(STEP_MS).emitWithAck("update_status", { status: "away" });
      check(ack.success === true && ack.data.status === "away", `update_status ack ${JSON.stringify(ack)}`);
      const bad = await socket.timeout(STEP_MS).emitWithAck("update_status", { status: "nope" });
      check(bad.success === false && socket.connected, "a bad payload is refused and the socket stays");
      return { userId: event.user.id, status: ack.data.status, badCode: bad.error.code };
    },
  ],
  [
    "bad token",
    async () => {
      const socket = open("/", { auth: { token: "garbage" } });
      const unauthorized = next(socket, "unauthorized");
      const disconnect = next(socket, "disconnect");
      const event = await unauthorized;
      const reason = await disconnect;
      check(event.code === "AUTH_001", `unauthorized ${JSON.stringify(event)}`);
      check(reason === "io server disconnect", `disconnect reason ${reason}`);
      return { code: event.code, reason, order: socket.seen.filter((e) => e !== "connect_error") };
    },
  ],
  [
    "query token",
    async () => {
      const socket = open("/", { query: { token } });
      const event = await signedIn(socket);
      return { userId: event.user.id };
    },
  ],
  [
    "namespace reconnect on a shared connection",
    async () => {
      // one Engine.IO connection carries `/` and `/status`; `/status` leaves and comes back on it
      const manager = new Manager(base, { transports: ["websocket"], reconnection: false });
      const root = manager.socket("/", { auth: { token } });
      const status = manager.socket("/status", { auth: { token } });
      sockets.push(root, status);
      await Promise.all([signedIn(root), signedIn(status)]);
      const left = next(status, "disconnect");
      status.disconnect();
      await left;
      const again = signedIn(status);
      status.connect();
      const event = await again;
      const ack = await status.timeout(STEP_MS).emitWithAck("update_status", { status: "online" });
      check(ack.success === true, `update_status after reconnecting ${JSON.stringify(ack)}`);
      return { userId: event.user.id, sameEngine: root.io === status.io && root.connected };
    },
  ],
];

for (const [name, run] of STEPS) {
  if (!token && name !== "register over REST") {
    report.failed.push({ step: name, error: "skipped: no token" });
    continue;
  }
  try {
    checks[name] = await run();
  } catch (error) {
    report.failed.push({ step: name, error: String(error?.message ?? error) });
  }
}
finish();
