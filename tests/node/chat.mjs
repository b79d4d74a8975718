// A multi-user chat driven by Node's socket.io-client 4.x, as browser and Node clients do.
//
//   node tests/node/chat.mjs http://127.0.0.1:3001
//
// Prints one JSON line of observations ({ok, failed, checks, figures}) and exits 0 only if every
// check passed. Every wait is bounded by STEP_MS, the whole run by TOTAL_MS.
import { io } from "socket.io-client";

const base = process.argv[2];
if (!base) {
  console.error("usage: node chat.mjs <serverUrl>");
  process.exit(2);
}
const api = `${base.replace(/\/$/, "")}/api/v1`;
const STEP_MS = 5000;
const TOTAL_MS = 60000;
const checks = [];
const figures = { messagesSent: { socket: 0, rest: 0 }, transports: {} };
const clients = [];

let finished = false;

function finish(ok, failed = null) {
  if (finished) return;
  finished = true;
  figures.eventsReceived = Object.fromEntries(clients.map((c) => [c.name, c.events.length]));
  console.log(JSON.stringify({ ok, failed, checks, figures }));
  process.exitCode = ok ? 0 : 1;
  for (const client of clients) client.socket?.disconnect();
  // let the disconnects reach the server, then leave even if something still holds the loop
  setTimeout(() => process.exit(), 2000).unref();
}

setTimeout(() => {
  finish(false, { step: "scenario", error: `not finished within ${TOTAL_MS} ms` });
  process.exit(1);
}, TOTAL_MS).unref();

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function step(name, fn) {
  if (finished) return; // a step failed (or time ran out): the rest do not run
  const started = Date.now();
  try {
    await fn();
    checks.push(name);
    (figures.stepMs ??= []).push(Date.now() - started);
  } catch (error) {
    finish(false, { step: name, error: String(error?.stack ?? error) });
    process.exit(1); // what is still pending may hold the loop; the JSON line is out
  }
}

async function rest(method, path, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(api + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const answer = await response.json();
  if (!response.ok || !answer.success) {
    throw new Error(`${method} ${path} answered ${response.status}: ${JSON.stringify(answer)}`);
  }
  return answer.data;
}

class Client {
  constructor(name, account, transports) {
    this.name = name;
    this.account = account;
    this.transports = transports;
    this.socket = null;
    this.events = [];
    this.waiters = [];
  }

  // connect a new socket and wait for `authenticated`; events are recorded from the first packet
  async connect() {
    this.events = [];
    const options = { auth: { token: this.account.token }, reconnection: false, forceNew: true };
    if (this.transports) options.transports = this.transports;
    this.socket = io(base, options);
    this.socket.onAny((event, payload) => {
      this.events.push({ event, payload });
      this.waiters = this.waiters.filter((waiter) => !waiter.try());
    });
    const { user } = await this.waitFor("authenticated");
    check(user.id === this.account.id, `${this.name} authenticated as itself`);
    figures.transports[this.name] = this.socket.io.engine.transport.name;
  }

  received(event, match = () => true) {
    return this.events.filter((e) => e.event === event && match(e.payload)).map((e) => e.payload);
  }

  // the first `event` (already received or still to come) whose payload matches
  waitFor(event, match = () => true, ms = STEP_MS) {
    return new Promise((resolve, reject) => {
      const waiter = {
        try: () => {
          const found = this.received(event, match);
          if (found.length === 0) return false;
          clearTimeout(timer);
          resolve(found[0]);
          return true;
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.name} got no matching ${event} within ${ms} ms`));
      }, ms);
      if (!waiter.try()) this.waiters.push(waiter);
    });
  }

  async call(event, payload) {
    const answer = await this.socket.timeout(STEP_MS).emitWithAck(event, payload);
    if (!answer?.success) throw new Error(`${this.name} ${event} refused: ${JSON.stringify(answer)}`);
    return answer.data;
  }

  async send(chatId, content) {
    const message = await this.call("send_message", { chatId, content });
    check(message.chatId === chatId && message.content === content, `${this.name}'s ack carries the message`);
    figures.messagesSent.socket += 1;
    return message;
  }

  async post(chatId, content) {
    const message = await rest("POST", "/messages", this.account.token, { chatId, content });
    figures.messagesSent.rest += 1;
    return message;
  }
}

const suffix = Math.random().toString(16).slice(2, 8);
const users = {};
const chats = {};
const byId = (id) => (payload) => payload?.id === id;

await step("register four users over REST", async () => {
  for (const name of ["ana", "ben", "cai", "dov"]) {
    const username = `${name}_${suffix}`;
    const data = await rest("POST", "/auth/register", null, {
      username,
      email: `${username}@example.com`,
      password: "Passw0rd",
    });
    users[name] = { id: data.user.id, token: data.token, username };
  }
});

const ana = new Client("ana", users.ana, ["websocket"]);
const ben = new Client("ben", users.ben, ["polling"]); // long-polling only
const cai = new Client("cai", users.cai); // polling, upgraded to websocket
const dov = new Client("dov", users.dov, ["websocket"]);
clients.push(ana, ben, cai, dov);

await step("a group of three and two private chats over REST", async () => {
  const group = await rest("POST", "/groups", ana.account.token, {
    name: `trio ${suffix}`,
    participants: [users.ben.id, users.cai.id],
  });
  check(group.type === "group" && group.participants.length === 3, "the group has three members");
  chats.group = group.id;
  chats.anaBen = (await rest("POST", "/chats", ana.account.token, { type: "private", participants: [users.ben.id] })).id;
  chats.anaCai = (await rest("POST", "/chats", ana.account.token, { type: "private", participants: [users.cai.id] })).id;
});

await step("four sockets authenticate", async () => {
  await Promise.all(clients.map((c) => c.connect()));
});

const sent = {};

await step("socket send_message reaches the other members as new_message", async () => {
  sent.first = await ana.send(chats.group, "hello from a socket");
  for (const c of [ben, cai]) {
    const message = await c.waitFor("new_message", byId(sent.first.id));
    check(message.senderId === users.ana.id && message.content === "hello from a socket", `${c.name} got it intact`);
  }
});

await step("REST POST /messages reaches every member's sockets, the sender's own too", async () => {
  sent.rest = await ben.post(chats.group, "hello over REST");
  for (const c of [ana, ben, cai]) await c.waitFor("new_message", byId(sent.rest.id));
});

await step("a private message reaches only the other participant", async () => {
  sent.private = await ana.send(chats.anaBen, "just for ben");
  await ben.waitFor("new_message", byId(sent.private.id));
});

await step("edit_message arrives as message_edited", async () => {
  const edited = await ana.call("edit_message", { messageId: sent.first.id, content: "hello (edited)" });
  check(edited.editedAt, "the ack carries editedAt");
  for (const c of [ben, cai]) {
    const event = await c.waitFor("message_edited", (p) => p.messageId === sent.first.id);
    check(event.content === "hello (edited)" && event.chatId === chats.group && event.editedAt, `${c.name}'s edit`);
  }
});

await step("delete_message arrives as message_deleted", async () => {
  await ben.call("delete_message", { messageId: sent.rest.id });
  for (const c of [ana, cai]) {
    const event = await c.waitFor("message_deleted", (p) => p.messageId === sent.rest.id);
    check(event.chatId === chats.group && event.deletedAt, `${c.name}'s delete`);
  }
});

await step("mark_read yields message_status read at the sender", async () => {
  await ben.call("mark_read", { chatId: chats.group, messageId: sent.first.id });
  const status = await ana.waitFor("message_status", (p) => p.status === "read" && p.userId === users.ben.id);
  check(status.messageId === sent.first.id && status.chatId === chats.group, "read status names the message");
});

await step("message_delivered yields message_status delivered at the sender", async () => {
  await cai.call("message_delivered", { messageId: sent.first.id });
  const status = await ana.waitFor("message_status", (p) => p.status === "delivered" && p.userId === users.cai.id);
  check(status.messageId === sent.first.id, "delivered status names the message");
});

await step("typing_start reaches the other members", async () => {
  await ana.call("typing_start", { chatId: chats.group });
  for (const c of [ben, cai]) {
    const typing = await c.waitFor("typing_start", (p) => p.chatId === chats.group);
    check(typing.userId === users.ana.id && typing.username === users.ana.username, `${c.name} sees who types`);
  }
});

await step("a user added while connected receives the next group message", async () => {
  await rest("POST", `/groups/${chats.group}/participants`, ana.account.token, { userIds: [users.dov.id] });
  await dov.waitFor("chat_created", byId(chats.group));
  sent.afterAdd = await ana.send(chats.group, "welcome, dov");
  for (const c of [ben, cai, dov]) await c.waitFor("new_message", byId(sent.afterAdd.id));
});

await step("a member removed while connected no longer receives group messages", async () => {
  await rest("DELETE", `/groups/${chats.group}/participants/${users.cai.id}`, ana.account.token);
  await cai.waitFor("participant_removed", (p) => p.chatId === chats.group && p.userId === users.cai.id);
  sent.afterRemove = await ana.send(chats.group, "cai is gone");
  for (const c of [ben, dov]) await c.waitFor("new_message", byId(sent.afterRemove.id));
  // the marker goes out after the group message on the same server; once cai has it, cai would have the other too
  sent.marker = await ana.send(chats.anaCai, "marker");
  await cai.waitFor("new_message", byId(sent.marker.id));
  check(cai.received("new_message", byId(sent.afterRemove.id)).length === 0, "cai did not get the group message");
  check(cai.received("new_message", (p) => p.chatId === chats.anaBen).length === 0, "cai never saw ana-ben");
  figures.removedMemberGotGroupMessage = false;
});

await step("a client that was away catches up with sync, exactly the missed messages", async () => {
  const seen = ben.received("new_message");
  const lastSeen = seen[seen.length - 1].id;
  check(lastSeen === sent.afterRemove.id, "ben's last seen message is the newest of his chats");
  ben.socket.disconnect();
  const missed = [
    await ana.send(chats.group, "while ben was away 1"),
    await ana.send(chats.anaBen, "while ben was away 2"),
    await dov.post(chats.group, "while ben was away 3"),
    await ana.send(chats.group, "while ben was away 4"),
  ].map((m) => m.id);
  await dov.waitFor("new_message", byId(missed[3]));
  await ben.connect();
  const got = [];
  let after = lastSeen;
  for (let page = 0; page < 5; page += 1) {
    const data = await ben.call("sync", { after, limit: 2 });
    got.push(...data.messages.map((m) => m.id));
    after = data.cursor;
    if (!data.hasMore) break;
  }
  figures.syncMissed = missed.length;
  figures.syncGot = got.length;
  check(JSON.stringify(got) === JSON.stringify(missed), `sync answered ${JSON.stringify(got)}, missed ${JSON.stringify(missed)}`);
  check(ben.received("new_message").length === 0, "the new socket got no live copies of old messages");
});

figures.checks = checks.length;
finish(true);
