// The Go Chat Web door driven from Node as the seed's Next.js front end drives it: global fetch against
// NEXT_PUBLIC_API_BASE_URL (<server>/api) and the `ws` package against NEXT_PUBLIC_WS_URL (ws://<server>/ws).
//
//   node tests/node/gochat.mjs http://127.0.0.1:3001
//
// Prints one JSON line of observations ({ok, failed, checks, figures}) and exits 0 only if every
// check passed (the conventions of chat.mjs). Every wait is bounded by STEP_MS, the whole run by TOTAL_MS.
import WebSocket from "ws";

const base = (process.argv[2] ?? "").replace(/\/$/, "");
if (!base) {
  console.error("usage: node gochat.mjs <serverUrl>");
  process.exit(2);
}
// what the front end's .env.local would hold
const API_BASE_URL = `${base}/api`;
const WS_URL = `${base.replace(/^http/, "ws")}/ws`;
const STEP_MS = 5000;
const TOTAL_MS = 60000;
// the server announces `offline` once a user's last connection has been gone this long (presence.grace_period)
const GRACE_MS = 5000;
const checks = [];
const figures = { messagesSent: { ws: 0, rest: 0 } };
const clients = [];

let finished = false;

function finish(ok, failed = null) {
  if (finished) return;
  finished = true;
  figures.framesReceived = Object.fromEntries(clients.map((c) => [c.name, c.frames.length]));
  console.log(JSON.stringify({ ok, failed, checks, figures }));
  process.exitCode = ok ? 0 : 1;
  for (const client of clients) client.close();
  // let the closes reach the server, then leave even if something still holds the loop
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

class ApiError extends Error {
  constructor(status, body) {
    super(`answered ${status}: ${JSON.stringify(body)}`);
    this.status = status;
    this.body = body;
  }
}

// The front end's request helper: JSON in, the envelope's `data` out, an ApiError for anything but 2xx.
// The envelope is checked on every answer: `code` equals the HTTP status, `timestamp` is Unix seconds.
async function api(method, path, { token, body, form } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(API_BASE_URL + path, {
    method,
    headers,
    body: form ?? (body === undefined ? undefined : JSON.stringify(body)),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const answer = await response.json();
  check(answer.code === response.status, `${method} ${path}: envelope code ${answer.code} is the status ${response.status}`);
  const skew = Math.abs(answer.timestamp - Date.now() / 1000);
  check(Number.isInteger(answer.timestamp) && skew < 60, `${method} ${path}: a Unix-seconds timestamp`);
  if (!response.ok) throw new ApiError(response.status, answer);
  return answer.data;
}

// The failure a call must end in: its status and envelope.
async function refused(status, promise, what) {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    check(error.status === status, `${what}: ${status}, not ${error.status} ${JSON.stringify(error.body)}`);
    check(typeof error.body.data?.error === "string", `${what}: data.error names the failure`);
    return error.body;
  }
  throw new Error(`${what}: succeeded, ${status} expected`);
}

// One user's /ws connection: every frame recorded from the first, waits bounded, requests by request_id.
class Live {
  constructor(name, account) {
    this.name = name;
    this.account = account;
    this.frames = [];
    this.waiters = [];
    this.ws = null;
    this.closed = null; // {code, reason} once the server or we closed it
    this.requests = 0;
  }

  async connect(token = this.account.token) {
    this.frames = [];
    this.closed = null;
    const ws = new WebSocket(`${WS_URL}?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    ws.on("message", (data, binary) => {
      // a frame that is no JSON text is recorded as such (a throw here would end node without the report)
      let frame;
      try {
        frame = binary ? { type: "<binary>" } : JSON.parse(data.toString());
      } catch {
        frame = { type: "<not json>", raw: data.toString().slice(0, 200) };
      }
      this.frames.push(frame);
      this.wake();
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on("error", () => {}); // the close that follows is what the steps look at
    const connected = await this.waitFor("connected");
    check(this.frames[0].type === "connected", `${this.name}'s first frame is connected, not ${this.frames[0].type}`);
    check(connected.user_id === this.account.id, `${this.name} connected as itself`);
    check(Number.isInteger(connected.timestamp), `${this.name}'s connected frame has Unix seconds`);
  }

  wake() {
    this.waiters = this.waiters.filter((waiter) => !waiter.try());
  }

  received(type, match = () => true) {
    return this.frames.filter((f) => f.type === type && match(f.data ?? {}, f)).map((f) => f.data ?? f);
  }

  // the first frame of `type` (already received or still to come) whose data matches
  waitFor(type, match = () => true, ms = STEP_MS) {
    return this.until(() => this.received(type, match)[0], `${type} frame`, ms);
  }

  until(found, what, ms = STEP_MS) {
    return new Promise((resolve, reject) => {
      const waiter = {
        try: () => {
          const value = found();
          if (value !== undefined) {
            clearTimeout(timer);
            resolve(value);
            return true;
          }
          if (this.closed && what !== "close") {
            clearTimeout(timer);
            reject(new Error(`${this.name}'s socket closed (${JSON.stringify(this.closed)}) before a matching ${what}`));
            return true;
          }
          return false;
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.name} got no matching ${what} within ${ms} ms`));
      }, ms);
      if (!waiter.try()) this.waiters.push(waiter);
    });
  }

  waitClose(ms = STEP_MS) {
    return this.until(() => this.closed ?? undefined, "close", ms);
  }

  // a frame with a request_id: the data of its `ack` (an `error` frame answering it throws)
  async request(type, data) {
    this.requests += 1;
    const requestId = `${this.name}-${this.requests}`;
    this.ws.send(JSON.stringify({ type, data, request_id: requestId }));
    const answer = await this.until(
      () => this.frames.find((f) => f.request_id === requestId && ["ack", "error", "pong"].includes(f.type)),
      `answer to ${type} ${requestId}`,
    );
    if (answer.type === "error") throw new Error(`${this.name} ${type} refused: ${JSON.stringify(answer.data)}`);
    return answer.type === "pong" ? answer : answer.data;
  }

  async send(chatId, content, type = "text") {
    const clientId = `${this.name}-${Date.now()}-${Math.random().toString(16).slice(2, 8)}`;
    const message = await this.request("send_message", { chat_id: chatId, content, type, client_id: clientId });
    check(message.chat_id === chatId && message.content === content, `${this.name}'s ack carries the message`);
    check(message.sender_id === this.account.id && message.status === "sent", `${this.name}'s ack: sender and status sent`);
    check(message.client_id === clientId && typeof message.message_id === "string", `${this.name}'s ack: ids`);
    figures.messagesSent.ws += 1;
    return message;
  }

  close() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "bye");
  }
}

const suffix = Math.random().toString(16).slice(2, 8);
const PASSWORD = "Passw0rd1";
const users = {};
const chats = {};
const sent = {};
const byId = (id) => (data) => data.message_id === id;

await step("register three users (201, the server picks the username)", async () => {
  for (const [key, name] of [["ana", "Ana Lima"], ["ben", "Ben Okafor"], ["cai", "Cai Wen"]]) {
    const email = `${key}.${suffix}@example.com`;
    const user = await api("POST", "/auth/register", { body: { name: `${name} ${suffix}`, email, password: PASSWORD } });
    check(user.email === email && user.name === `${name} ${suffix}` && typeof user.user_id === "string", `${key} registered`);
    users[key] = { id: user.user_id, name: user.name, email };
  }
  const twice = { name: "again", email: users.ana.email, password: PASSWORD };
  const body = await refused(409, api("POST", "/auth/register", { body: twice }), "a second registration");
  check(body.message === "Email already exists", "duplicate email message");
});

await step("log in: access and refresh tokens, expires_in, the user", async () => {
  for (const key of ["ana", "ben", "cai"]) {
    const login = await api("POST", "/auth/login", { body: { email: users[key].email, password: PASSWORD } });
    check(login.access_token && login.refresh_token && login.expires_in > 0, `${key}'s tokens`);
    check(login.user.user_id === users[key].id && login.user.email === users[key].email, `${key}'s user`);
    Object.assign(users[key], { token: login.access_token, refresh: login.refresh_token });
    figures.expiresIn = login.expires_in;
  }
  const bad = { email: users.ana.email, password: "nope-nope1" };
  const wrong = await refused(401, api("POST", "/auth/login", { body: bad }), "a wrong password");
  check(wrong.message === "Invalid email or password", "wrong password message");
  const profile = await api("GET", "/users/profile", { token: users.ana.token });
  check(profile.user_id === users.ana.id && profile.email === users.ana.email, "ana's profile");
});

await step("list chats (empty), find a user, open a private chat, list again", async () => {
  const before = await api("GET", "/chats?page=1&limit=20&sort=updated_at:desc", { token: users.ana.token });
  check(before.chats.length === 0 && before.pagination.total === 0 && before.pagination.page === 1, "no chats yet");
  const query = encodeURIComponent(`okafor ${suffix}`);
  const found = await api("GET", `/users/search?query=${query}&page=1&limit=20`, { token: users.ana.token });
  check(found.users.some((u) => u.user_id === users.ben.id), "search finds ben");
  check(found.users.every((u) => !("email" in u)), "without an email");
  const chat = await api("POST", "/chats/private", { token: users.ana.token, body: { participant_id: users.ben.id } });
  check(chat.type === "private" && chat.participants.length === 2, "a private chat of two");
  check(chat.name === users.ben.name, "named after the other participant");
  chats.anaBen = chat.chat_id;
  const reopen = api("POST", "/chats/private", { token: users.ana.token, body: { participant_id: users.ben.id } });
  const again = await refused(409, reopen, "opening it again");
  check(again.data.chat_id === chats.anaBen, "the 409 names the existing chat");
  const listed = await api("GET", "/chats", { token: users.ben.token });
  const seen = listed.chats.find((c) => c.chat_id === chats.anaBen);
  check(seen && seen.name === users.ana.name, "ben lists it, named after ana");
  check(seen.unread_count === 0 && seen.last_message === null, "nothing in it yet");
  const history = await api("GET", `/chats/${chats.anaBen}/messages?page=1&limit=50`, { token: users.ben.token });
  check(history.messages.length === 0 && history.pagination.limit === 50, "an empty history");
});

const ana = new Live("ana", users.ana);
const ben = new Live("ben", users.ben);
const cai = new Live("cai", users.cai);
clients.push(ana, ben, cai);

await step("connect /ws for each (connected frame, ping/pong); a bad token is refused before the upgrade", async () => {
  await ana.connect();
  await ben.connect();
  await cai.connect();
  const pong = await ana.request("ping");
  check(pong.type === "pong", "ping answered pong with its request_id");
  const status = await new Promise((resolve, reject) => {
    const ws = new WebSocket(`${WS_URL}?token=not-a-token`);
    const timer = setTimeout(() => reject(new Error("no answer to a bad token")), STEP_MS);
    ws.on("unexpected-response", (_, response) => {
      clearTimeout(timer);
      resolve(response.statusCode);
      ws.terminate();
    });
    ws.on("open", () => reject(new Error("a bad token opened a socket")));
    ws.on("error", () => {});
  });
  check(status === 401, `a bad token: HTTP ${status}`);
  figures.badTokenStatus = status;
});

await step("user_status: ana sees ben come online, then ben set away over /ws", async () => {
  const online = await ana.waitFor("user_status", (d) => d.user_id === users.ben.id && d.status === "online");
  check("last_seen" in online, "user_status carries last_seen");
  const answer = await ben.request("user_status", { status: "away" });
  check(answer.status === "away", "ben's ack");
  await ana.waitFor("user_status", (d) => d.user_id === users.ben.id && d.status === "away");
  await ben.request("user_status", { status: "online" });
  await ana.waitFor("user_status", (d) => d.user_id === users.ben.id && d.status === "online", STEP_MS);
});

await step("send_message over /ws: ack, new_message to the other and to the sender", async () => {
  sent.first = await ana.send(chats.anaBen, "hello over /ws");
  const got = await ben.waitFor("new_message", byId(sent.first.message_id));
  check(got.sender_id === users.ana.id && got.sender_name === users.ana.name, "ben sees who sent it");
  check(got.content === "hello over /ws", "ben got it intact");
  check(got.type === "text" && Number.isInteger(got.created_at) && got.edited_at === null, "message fields");
  await ana.waitFor("new_message", byId(sent.first.message_id));
  check(cai.received("new_message").length === 0, "cai, not in the chat, got nothing");
});

await step("the sender is told delivered", async () => {
  const isDelivered = (d) => d.message_id === sent.first.message_id && d.status === "delivered";
  const delivered = await ana.waitFor("message_status", isDelivered);
  check(delivered.chat_id === chats.anaBen && Number.isInteger(delivered.timestamp), "delivered names chat and time");
});

await step("typing_start and typing_stop reach the other participant", async () => {
  await ben.request("typing_start", { chat_id: chats.anaBen });
  const start = await ana.waitFor("typing_start", (d) => d.chat_id === chats.anaBen);
  check(start.user_id === users.ben.id && start.user_name === users.ben.name, "who types");
  await ben.request("typing_stop", { chat_id: chats.anaBen });
  const stop = await ana.waitFor("typing_stop", (d) => d.chat_id === chats.anaBen);
  check(stop.user_id === users.ben.id, "who stopped");
});

await step("mark_read over /ws: the sender gets message_status read, after delivered", async () => {
  const state = await ben.request("mark_read", { chat_id: chats.anaBen, message_id: sent.first.message_id });
  check(state.chat_id === chats.anaBen && state.unread_count === 0, `ben's ack: ${JSON.stringify(state)}`);
  await ana.waitFor("message_status", (d) => d.message_id === sent.first.message_id && d.status === "read");
  const statuses = ana.received("message_status", (d) => d.message_id === sent.first.message_id).map((d) => d.status);
  check(JSON.stringify(statuses) === JSON.stringify(["delivered", "read"]), `ana's statuses in order: ${statuses}`);
  figures.statusOrder = statuses;
  check(ben.received("message_status").length === 0, "the reader is not told of its own read");
});

await step("POST a message over REST: it arrives over /ws; history newest first, and oldest first", async () => {
  const body = { content: "hello over REST", type: "text" };
  sent.rest = await api("POST", `/chats/${chats.anaBen}/messages`, { token: users.ben.token, body });
  figures.messagesSent.rest += 1;
  check(sent.rest.status === "sent" && sent.rest.sender_id === users.ben.id, "the REST answer");
  await ana.waitFor("new_message", byId(sent.rest.message_id));
  const newest = await api("GET", `/chats/${chats.anaBen}/messages?page=1&limit=50`, { token: users.ben.token });
  const order = newest.messages.map((m) => m.message_id);
  check(JSON.stringify(order) === JSON.stringify([sent.rest.message_id, sent.first.message_id]), "newest first");
  check(newest.messages[1].status === "read" && newest.pagination.total === 2, "the first is read");
  const oldest = await api("GET", `/chats/${chats.anaBen}/messages?sort=created_at:asc`, { token: users.ana.token });
  check(oldest.messages[0].message_id === sent.first.message_id, "oldest first");
  const list = await api("GET", "/chats", { token: users.ana.token });
  const chat = list.chats.find((c) => c.chat_id === chats.anaBen);
  check(chat.last_message?.message_id === sent.rest.message_id, "ana's chat list shows the last message");
  check(chat.unread_count === 1, "and one unread");
});

await step("edit over REST: message_edited frame; someone else's edit is refused", async () => {
  const path = `/messages/${sent.first.message_id}`;
  const edited = await api("PUT", path, { token: users.ana.token, body: { content: "hello (edited)" } });
  check(edited.status === "edited" && edited.content === "hello (edited)", "the edit answer");
  check(Number.isInteger(edited.edited_at), "edited_at in Unix seconds");
  const frame = await ben.waitFor("message_edited", (d) => d.message_id === sent.first.message_id);
  check(frame.chat_id === chats.anaBen && frame.content === "hello (edited)", "ben's frame");
  check(frame.edited_at === edited.edited_at, "the same edited_at");
  const theirs = api("PUT", path, { token: users.ben.token, body: { content: "mine now" } });
  const body = await refused(403, theirs, "ben editing ana's message");
  check(body.message === "You can only edit your own messages", "the 403 message");
});

await step("delete over REST: message_deleted frame; gone from history; deleting again is 404", async () => {
  await api("DELETE", `/messages/${sent.rest.message_id}`, { token: users.ben.token });
  const frame = await ana.waitFor("message_deleted", (d) => d.message_id === sent.rest.message_id);
  check(frame.chat_id === chats.anaBen && Number.isInteger(frame.deleted_at), "ana's frame");
  const history = await api("GET", `/chats/${chats.anaBen}/messages`, { token: users.ana.token });
  check(history.messages.every((m) => m.message_id !== sent.rest.message_id), "left out of history");
  check(history.pagination.total === 1, "and out of its total");
  await refused(404, api("DELETE", `/messages/${sent.rest.message_id}`, { token: users.ben.token }), "a second delete");
});

await step("create a group: the owner and a member; its messages reach the member", async () => {
  const body = { name: `crew ${suffix}`, description: "the crew", member_ids: [users.ben.id] };
  const group = await api("POST", "/groups", { token: users.ana.token, body });
  check(group.owner_id === users.ana.id && group.member_count === 2, "owner and two members");
  const roles = Object.fromEntries(group.members.map((m) => [m.user_id, m.role]));
  check(roles[users.ana.id] === "owner" && roles[users.ben.id] === "member", `roles ${JSON.stringify(roles)}`);
  chats.group = group.chat_id;
  chats.groupId = group.group_id;
  sent.group1 = await ana.send(chats.group, "welcome, ben");
  await ben.waitFor("new_message", byId(sent.group1.message_id));
});

await step("add a member: the new member gets the next group message", async () => {
  const body = { member_ids: [users.cai.id] };
  const added = await api("POST", `/groups/${chats.groupId}/members`, { token: users.ana.token, body });
  check(added.group_id === chats.groupId && added.added_members.map((m) => m.user_id).join() === users.cai.id, "cai added");
  sent.group2 = await ana.send(chats.group, "welcome, cai");
  for (const c of [ben, cai]) await c.waitFor("new_message", byId(sent.group2.message_id));
  const group = await api("GET", `/groups/${chats.groupId}`, { token: users.cai.token });
  check(group.member_count === 3, "three members");
});

await step("remove a member: the removed one no longer gets group messages (barrier)", async () => {
  await api("DELETE", `/groups/${chats.groupId}/members/${users.cai.id}`, { token: users.ana.token });
  sent.group3 = await ana.send(chats.group, "cai has gone");
  await ben.waitFor("new_message", byId(sent.group3.message_id));
  await ana.request("typing_start", { chat_id: chats.group });
  await ben.waitFor("typing_start", (d) => d.chat_id === chats.group);
  // the marker goes out after the group message and the typing through the same server; once cai has it,
  // cai would have had them too
  const anaCai = await api("POST", "/chats/private", { token: users.ana.token, body: { participant_id: users.cai.id } });
  chats.anaCai = anaCai.chat_id;
  sent.marker = await ana.send(chats.anaCai, "marker");
  await cai.waitFor("new_message", byId(sent.marker.message_id));
  check(cai.received("new_message", byId(sent.group3.message_id)).length === 0, "cai did not get the group message");
  check(cai.received("typing_start", (d) => d.chat_id === chats.group).length === 0, "nor the group's typing");
  check(cai.received("new_message", (d) => d.chat_id === chats.anaBen).length === 0, "cai never saw ana-ben");
  const reading = api("GET", `/chats/${chats.group}/messages`, { token: users.cai.token });
  await refused(404, reading, "the removed member reading the group");
  figures.removedMemberGotGroupMessage = false;
});

await step("upload a file with FormData, fetch its url back, send it as a file message", async () => {
  const bytes = `hello from gochat.mjs ${suffix}\n`;
  const form = new FormData();
  form.append("file", new Blob([bytes], { type: "text/plain" }), "hello.txt");
  form.append("purpose", "message");
  const upload = await api("POST", "/uploads", { token: users.ana.token, form });
  check(upload.filename === "hello.txt" && upload.size === Buffer.byteLength(bytes), `upload answer ${JSON.stringify(upload)}`);
  check(upload.mime_type.startsWith("text/plain") && typeof upload.file_id === "string", "the upload's type and id");
  const response = await fetch(new URL(upload.url, base), { signal: AbortSignal.timeout(STEP_MS) });
  check(response.status === 200 && (await response.text()) === bytes, "the url answers the bytes");
  check(response.headers.get("content-type").startsWith("text/plain"), "with their type");
  figures.uploadSize = upload.size;
  sent.file = await ana.send(chats.anaBen, upload.url, "file");
  const got = await ben.waitFor("new_message", byId(sent.file.message_id));
  check(got.type === "file" && got.content === upload.url, "ben got the file message");
});

await step("refresh the token twice with the same refresh token; the new access token works", async () => {
  const tokens = [];
  for (let i = 0; i < 2; i += 1) {
    const refreshed = await api("POST", "/auth/refresh", { body: { refresh_token: users.ana.refresh } });
    check(refreshed.access_token && refreshed.expires_in > 0, `refresh ${i + 1}`);
    tokens.push(refreshed.access_token);
  }
  figures.refreshes = tokens.length;
  const profile = await api("GET", "/users/profile", { token: tokens[1] });
  check(profile.user_id === users.ana.id, "the refreshed token is ana's");
  users.ana.previous = users.ana.token;
  users.ana.token = tokens[1]; // the front end keeps the newest
});

await step("logout closes the login's socket with 4001; its tokens are refused; others stay", async () => {
  await api("POST", "/auth/logout", { token: users.ana.token });
  const closed = await ana.waitClose();
  check(closed.code === 4001, `ana's socket closed with ${JSON.stringify(closed)}`);
  figures.logoutCloseCode = closed.code;
  const refresh = api("POST", "/auth/refresh", { body: { refresh_token: users.ana.refresh } });
  await refused(401, refresh, "the refresh token after logout");
  await refused(401, api("GET", "/users/profile", { token: users.ana.token }), "the access token after logout");
  await refused(401, api("GET", "/users/profile", { token: users.ana.previous }), "the first access token after logout");
  for (const c of [ben, cai]) check((await c.request("ping")).type === "pong", `${c.name} still connected`);
  const closedAt = Date.now();
  check(clients.every((c) => c.frames.every((f) => !f.type.startsWith("<"))), "every frame was JSON text");
  await ben.waitFor("user_status", (d) => d.user_id === users.ana.id && d.status === "offline", GRACE_MS + STEP_MS);
  figures.offlineAnnouncedAfterMs = Date.now() - closedAt;
});

figures.checks = checks.length;
finish(true);
