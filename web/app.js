// WhatsChat's web client: REST for the account, the chat list and history; one Socket.IO
// connection (namespace "/") for everything live. Reconnects by itself and catches up with `sync`.
import { io } from "./vendor/socket.io.esm.min.js";
import { ApiError, Session, errorFrom } from "./js/api.js";
import { Calls } from "./js/calls.js";
import { $, PRESENCE_WORDS, el, sizeOf, timeOf, whenOf } from "./js/dom.js";

const PAGE = 30; // messages per history page
const RANK = { pending: 0, sent: 1, delivered: 2, read: 3 };
const UPLOAD_URL = /^\/api\/v1\/uploads\/[0-9a-f]+$/;

const session = new Session();
const state = {
  me: null,
  chats: new Map(), // chatId -> Chat (as GET /chats answers it)
  open: null, // the open chat's id
  history: new Map(), // chatId -> {items: [oldest .. newest], older, loading}
  presence: new Map(), // userId -> {status, lastSeen}
  typing: new Map(), // chatId -> Map(userId -> {username, timer})
  lastId: null, // the newest message id this tab has seen: where `sync` starts
  syncFrom: null, // ISO time, when no message was seen yet
  outbox: [], // messages written while offline, sent (idempotently, by clientId) on reconnect
  replyTo: null,
  editing: null,
  picked: new Map(), // userId -> username, for a new group
};
let socket = null;
let ready = false; // connected and authenticated
let everReady = false;
let refused = null; // the `unauthorized` the server sent before disconnecting us

const calls = new Calls({ emit, notify, me: () => state.me });

// ---------------------------------------------------------------- alerts and connection state

function notify(error, { level = "error" } = {}) {
  const words = error instanceof ApiError ? error.words : (error?.message ?? String(error));
  const item = el(
    "p",
    { class: `alert ${level}` },
    el("span", { text: words }),
    el("button", { type: "button", text: "Dismiss", onclick: () => item.remove() }),
  );
  $("alerts").append(item);
  setTimeout(() => item.remove(), level === "error" ? 15000 : 6000);
  if (level === "error") console.warn("WhatsChat:", words);
}

let connectionTimer = null;
function setConnection(kind, words) {
  const banner = $("connection");
  clearTimeout(connectionTimer);
  banner.dataset.state = kind;
  banner.textContent = words;
  banner.hidden = false;
  document.body.classList.toggle("offline", kind === "offline");
  if (kind === "online") connectionTimer = setTimeout(() => (banner.hidden = true), 3000);
}

// ---------------------------------------------------------------- socket

function emit(event, data, timeout = 10000) {
  return new Promise((resolve, reject) => {
    if (!socket || !ready) {
      reject(new ApiError("OFFLINE", "You are offline; this will work again once reconnected"));
      return;
    }
    socket.timeout(timeout).emit(event, data, (err, answer) => {
      if (err) reject(new ApiError("TIMEOUT", `The server did not answer (${event}) in time`));
      else if (!answer?.success) reject(errorFrom(answer));
      else resolve(answer.data);
    });
  });
}

function connectSocket() {
  socket = io(window.location.origin, {
    auth: (cb) => cb({ token: session.token }),
    reconnectionDelayMax: 5000,
    forceNew: true, // a fresh Manager per login, no listeners left from the previous one
    // WebSocket first: one TCP connection, so it works when several server processes share the port
    // (`--workers`, no sticky sessions), where long-polling's separate requests land on other processes.
    // Long-polling stays the fallback for networks that block WebSocket.
    transports: ["websocket", "polling"],
    tryAllTransports: true,
  });
  setConnection("connecting", "Connecting…");
  socket.on("connect", () => setConnection("connecting", "Connected, signing in…"));
  socket.on("authenticated", ({ user }) => onAuthenticated(user).catch(notify));
  socket.on("unauthorized", (why) => {
    refused = why;
  });
  socket.on("disconnect", (reason) => onDisconnect(reason));
  socket.on("connect_error", (error) => setConnection("offline", `Offline: cannot reach the server (${error.message}). Retrying…`));
  socket.io.on("reconnect_attempt", (n) => setConnection("offline", `Offline. Reconnecting (attempt ${n})…`));
  socket.on("error", (error) => notify(new ApiError(error?.code, `${error?.message ?? "Error"} (${error?.event ?? "event"})`)));
  socket.on("new_message", (m) => onNewMessage(m, { live: true }));
  socket.on("message_edited", onEdited);
  socket.on("message_deleted", onDeleted);
  socket.on("message_status", onStatus);
  socket.on("typing_start", (t) => onTyping(t, true));
  socket.on("typing_stop", (t) => onTyping(t, false));
  socket.on("chat_created", (chat) => {
    addChat(chat);
    render();
  });
  socket.on("chat_updated", onChatUpdated);
  socket.on("chat_deleted", ({ chatId }) => dropChat(chatId, "This chat was deleted"));
  socket.on("participant_added", ({ chatId, participants }) => {
    const chat = state.chats.get(chatId);
    if (!chat) return refreshChat(chatId);
    const known = new Set(chat.participants.map((p) => p.id));
    chat.participants.push(...participants.filter((p) => !known.has(p.id)));
    chat.participantCount = chat.participants.length;
    render();
  });
  socket.on("participant_removed", ({ chatId, userId }) => {
    if (userId === state.me.id) return dropChat(chatId, "You were removed from a group");
    const chat = state.chats.get(chatId);
    if (!chat) return;
    chat.participants = chat.participants.filter((p) => p.id !== userId);
    chat.participantCount = chat.participants.length;
    render();
  });
  socket.on("user_status_changed", ({ userId, status, lastSeen }) => {
    state.presence.set(userId, { status, lastSeen });
    render();
  });
  socket.on("incoming_call", (call) => calls.incoming(call));
  socket.on("call_status_update", (call) => calls.update(call));
  socket.on("webrtc_offer", (m) => calls.onOffer(m));
  socket.on("webrtc_answer", (m) => calls.onAnswer(m));
  socket.on("webrtc_ice_candidate", (m) => calls.onIce(m));
}

async function onAuthenticated(user) {
  ready = true;
  refused = null;
  state.me = { ...state.me, ...user };
  renderMe();
  setConnection("online", everReady ? "Back online" : "Online");
  if (!everReady) {
    everReady = true;
    state.syncFrom = new Date(Date.now() - 60_000).toISOString();
    await loadChats();
  } else {
    await catchUp();
  }
  await flushOutbox();
}

async function onDisconnect(reason) {
  ready = false;
  for (const chatId of state.typing.keys()) clearTyping(chatId);
  if (reason === "io client disconnect") return; // we closed it (log out)
  if (reason === "io server disconnect") {
    const why = refused;
    refused = null;
    setConnection("offline", "Signed out by the server; trying to sign in again…");
    try {
      if (why) await session.refresh(); // an expired token: a fresh one, then reconnect
      if (session.signedIn) setTimeout(() => socket?.connect(), why ? 0 : 1000);
    } catch (error) {
      if (session.signedIn) {
        notify(error);
        setTimeout(() => socket?.connect(), 3000);
      }
    }
    return;
  }
  setConnection("offline", "Offline: the connection was lost. Reconnecting…");
}

// catch up on what happened while the socket was away
async function catchUp() {
  let after = state.lastId ?? state.syncFrom;
  const touched = new Map(); // chatId -> newest message from someone else
  for (let round = 0; round < 20; round++) {
    const answer = await emit("sync", { after, limit: 500 });
    for (const message of answer.messages) {
      onNewMessage(message, { live: false });
      if (message.senderId !== state.me.id) touched.set(message.chatId, message.id);
    }
    for (const message of answer.changed) upsert(message);
    if (!answer.hasMore) break;
    after = answer.cursor;
  }
  await loadChats();
  for (const messageId of touched.values()) emit("message_delivered", { messageId }).catch(notify);
  markRead(state.open);
}

window.addEventListener("online", () => {
  // the network is back: reconnect now instead of waiting for the next backoff step
  if (socket && !socket.connected && session.signedIn) {
    socket.disconnect();
    socket.connect();
  }
});
window.addEventListener("offline", () => {
  if (session.signedIn) setConnection("offline", "Offline: no network. Waiting for it to come back…");
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") markRead(state.open);
});

// ---------------------------------------------------------------- state changes

function seen(id) {
  if (id && (!state.lastId || id > state.lastId)) state.lastId = id;
}

function addChat(chat) {
  const old = state.chats.get(chat.id);
  state.chats.set(chat.id, { ...old, ...chat, unreadCount: chat.unreadCount ?? old?.unreadCount ?? 0 });
  for (const p of chat.participants ?? []) {
    if (p.presence) state.presence.set(p.id, { ...state.presence.get(p.id), status: p.presence });
  }
  if (chat.lastMessage) seen(chat.lastMessage.id);
}

async function loadChats() {
  const chats = await session.call("GET", "/chats?limit=100");
  const fresh = new Set(chats.map((c) => c.id));
  for (const id of [...state.chats.keys()]) if (!fresh.has(id)) state.chats.delete(id);
  for (const chat of chats) addChat(chat);
  const open = state.chats.get(state.open);
  if (state.open && !open) closeChat();
  render();
  if (open?.type === "private") loadPeer(open);
}

async function refreshChat(chatId) {
  try {
    addChat(await session.call("GET", `/chats/${chatId}`));
    render();
  } catch (error) {
    notify(error);
  }
}

function onChatUpdated(chat) {
  const old = state.chats.get(chat.id);
  if (!old) return refreshChat(chat.id);
  // a broadcast carries no per-user fields: keep ours
  const participants = chat.participants.map((p) => ({ ...p, presence: null }));
  state.chats.set(chat.id, { ...old, ...chat, participants, unreadCount: old.unreadCount, settings: old.settings, role: old.role });
  render();
}

function dropChat(chatId, words) {
  if (!state.chats.delete(chatId)) return;
  state.history.delete(chatId);
  if (state.open === chatId) closeChat();
  notify(new Error(words), { level: "info" });
  render();
}

function chatName(chat) {
  if (chat.type === "private") return peerOf(chat)?.username ?? chat.name;
  return chat.name;
}

function peerOf(chat) {
  return chat.type === "private" ? chat.participants.find((p) => p.id !== state.me.id) : null;
}

function historyOf(chatId) {
  return state.history.get(chatId);
}

// insert or replace a message, in id order; pending ones (no id yet) stay last
function upsert(message) {
  const history = historyOf(message.chatId);
  const chat = state.chats.get(message.chatId);
  if (chat?.lastMessage?.id === message.id) chat.lastMessage = message;
  if (!history) return;
  const items = history.items;
  let at = items.findIndex(
    (m) => (message.id && m.id === message.id) || (m.pending && message.clientId && m.clientId === message.clientId && message.senderId === state.me.id),
  );
  if (at >= 0) {
    const before = items[at];
    if (before.status && RANK[before.status] > RANK[message.status]) message.status = before.status;
    items.splice(at, 1);
  }
  if (message.pending) {
    items.push(message);
    return;
  }
  at = items.findIndex((m) => m.pending || m.id > message.id);
  items.splice(at < 0 ? items.length : at, 0, message);
}

function onNewMessage(message, { live }) {
  seen(message.id);
  const chat = state.chats.get(message.chatId);
  if (!chat) {
    refreshChat(message.chatId);
    return;
  }
  const known = historyOf(message.chatId)?.items.some((m) => m.id === message.id);
  upsert(message);
  if (!chat.lastMessage || chat.lastMessage.id <= message.id) chat.lastMessage = message;
  chat.lastActivity = message.createdAt;
  if (message.senderId !== state.me.id && !known) {
    if (live) emit("message_delivered", { messageId: message.id }).catch(notify);
    const typists = state.typing.get(message.chatId);
    if (typists?.has(message.senderId)) {
      clearTimeout(typists.get(message.senderId).timer);
      typists.delete(message.senderId);
    }
    if (state.open === message.chatId && document.visibilityState === "visible") {
      if (live) markRead(message.chatId, message.id);
    } else {
      chat.unreadCount = (chat.unreadCount ?? 0) + 1;
    }
  }
  render({ stick: message.senderId === state.me.id });
}

function onEdited({ messageId, chatId, content, editedAt }) {
  change(chatId, messageId, (m) => Object.assign(m, { content, editedAt }));
}

function onDeleted({ messageId, chatId }) {
  change(chatId, messageId, (m) => Object.assign(m, { deleted: true, content: "", metadata: null }));
}

function change(chatId, messageId, apply) {
  const chat = state.chats.get(chatId);
  if (chat?.lastMessage?.id === messageId) apply(chat.lastMessage);
  const message = historyOf(chatId)?.items.find((m) => m.id === messageId);
  if (message) apply(message);
  render();
}

// delivered or read "up to" messageId: every own message at or before it
function onStatus({ chatId, messageId, userId, status }) {
  const chat = state.chats.get(chatId);
  if (!chat) return;
  if (userId === state.me.id) {
    // we read it on another device
    if (status === "read" && (!chat.lastMessage || chat.lastMessage.id <= messageId)) chat.unreadCount = 0;
    render();
    return;
  }
  const raise = (m) => {
    if (m && m.id && m.senderId === state.me.id && m.id <= messageId && RANK[status] > RANK[m.status]) m.status = status;
  };
  for (const m of historyOf(chatId)?.items ?? []) raise(m);
  raise(chat.lastMessage);
  render();
}

function onTyping({ chatId, userId, username }, started) {
  if (userId === state.me.id) return;
  const typists = state.typing.get(chatId) ?? new Map();
  state.typing.set(chatId, typists);
  clearTimeout(typists.get(userId)?.timer);
  if (started) {
    // a typing_stop that never comes (a closed tab) must not leave it forever
    const timer = setTimeout(() => onTyping({ chatId, userId, username }, false), 8000);
    typists.set(userId, { username, timer });
  } else {
    typists.delete(userId);
  }
  renderTyping();
  renderChatList();
}

function clearTyping(chatId) {
  for (const { timer } of state.typing.get(chatId)?.values() ?? []) clearTimeout(timer);
  state.typing.delete(chatId);
  renderTyping();
}

function markRead(chatId, messageId = null) {
  const chat = state.chats.get(chatId);
  if (!chat || !ready || document.visibilityState !== "visible") return;
  if (!messageId && !chat.unreadCount) return;
  emit("mark_read", messageId ? { chatId, messageId } : { chatId })
    .then((answer) => {
      chat.unreadCount = answer.unreadCount;
      renderChatList();
    })
    .catch(notify);
}

// ---------------------------------------------------------------- opening chats, history

async function openChat(chatId) {
  const chat = state.chats.get(chatId);
  if (!chat) return;
  if (state.open !== chatId) cancelContext();
  state.open = chatId;
  $("composer").hidden = false;
  render({ stick: true });
  if (!historyOf(chatId)) {
    state.history.set(chatId, { items: [], older: true, loading: false });
    await loadOlder(chatId, { first: true });
  }
  markRead(chatId);
  if (chat.type === "private") loadPeer(chat);
  $("composer-input").focus();
}

function closeChat() {
  state.open = null;
  cancelContext();
  $("composer").hidden = true;
}

async function loadPeer(chat) {
  const peer = peerOf(chat);
  if (!peer) return;
  try {
    const user = await session.call("GET", `/users/${peer.id}`);
    state.presence.set(user.id, { status: user.presence, lastSeen: user.lastSeen });
    renderHeader();
    renderChatList();
  } catch (error) {
    notify(error);
  }
}

async function loadOlder(chatId, { first = false } = {}) {
  const history = historyOf(chatId);
  if (!history || history.loading || !history.older) return;
  history.loading = true;
  renderMessages();
  const oldest = history.items.find((m) => m.id);
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (oldest && !first) query.set("before", oldest.id);
  try {
    const { messages } = await session.call("GET", `/messages/${chatId}?${query}`);
    for (const message of messages) {
      seen(message.id);
      upsert(message);
    }
    history.older = messages.length === PAGE;
  } catch (error) {
    notify(error);
  } finally {
    history.loading = false;
  }
  if (state.open === chatId) renderMessages({ keep: first ? "bottom" : "prepend" });
}

// ---------------------------------------------------------------- sending

function newClientId() {
  if (window.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function send(chatId, content, { type = "text", metadata = null } = {}) {
  const item = {
    pending: true,
    id: null,
    clientId: newClientId(),
    chatId,
    content,
    type,
    metadata,
    replyTo: state.replyTo?.id ?? null,
    senderId: state.me.id,
    sender: { id: state.me.id, username: state.me.username, avatar: null },
    status: "pending",
    createdAt: new Date().toISOString(),
  };
  upsert(item);
  state.outbox.push(item);
  cancelContext();
  render({ stick: true });
  return deliver(item);
}

async function deliver(item) {
  if (!ready) return; // waits in the outbox for the next connection
  const payload = { chatId: item.chatId, content: item.content, type: item.type, clientId: item.clientId };
  if (item.metadata) payload.metadata = item.metadata;
  if (item.replyTo) payload.replyTo = item.replyTo;
  try {
    const message = await emit("send_message", payload, 15000);
    state.outbox = state.outbox.filter((m) => m !== item);
    onNewMessage(message, { live: false });
  } catch (error) {
    if (error.code === "OFFLINE" || error.code === "TIMEOUT") return; // sent again on reconnect, same clientId
    state.outbox = state.outbox.filter((m) => m !== item);
    const items = historyOf(item.chatId)?.items;
    if (items) items.splice(items.indexOf(item), 1);
    render();
    notify(new ApiError(error.code, `Your message was not sent: ${error.message}`, error.details));
    if (item.type === "text" && !$("composer-input").value) $("composer-input").value = item.content;
  }
}

async function flushOutbox() {
  for (const item of [...state.outbox]) await deliver(item);
}

let typingSent = false;
let typingTimer = null;
function typing() {
  const chatId = state.open;
  if (!chatId || !ready || state.editing) return;
  if (!typingSent) {
    typingSent = chatId;
    emit("typing_start", { chatId }).catch(notify);
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, 3000);
}

function stopTyping() {
  clearTimeout(typingTimer);
  if (typingSent && ready) emit("typing_stop", { chatId: typingSent }).catch(notify);
  typingSent = false;
}

async function submitComposer(event) {
  event.preventDefault();
  const input = $("composer-input");
  const content = input.value;
  if (!state.open || !content.trim()) return;
  stopTyping();
  if (state.editing) {
    const editing = state.editing;
    try {
      upsert({ ...editing, ...(await emit("edit_message", { messageId: editing.id, content })) });
      input.value = "";
      cancelContext();
      render();
    } catch (error) {
      notify(error);
    }
    return;
  }
  input.value = "";
  await send(state.open, content);
}

async function attach() {
  const input = $("attach");
  const file = input.files?.[0];
  const chatId = state.open;
  input.value = "";
  if (!file || !chatId) return;
  const form = new FormData();
  form.append("purpose", "message");
  form.append("file", file, file.name);
  setContext(`Uploading ${file.name} (${sizeOf(file.size)})…`, null);
  try {
    const upload = await session.call("POST", "/uploads", { form, timeout: 120000 });
    const kind = upload.mimeType.split("/")[0];
    const type = ["image", "video", "audio"].includes(kind) ? kind : "file";
    const caption = $("composer-input").value.trim();
    $("composer-input").value = "";
    cancelContext();
    const metadata = { url: upload.url, filename: upload.filename, size: upload.size, mimeType: upload.mimeType, uploadId: upload.id };
    await send(chatId, caption, { type, metadata });
  } catch (error) {
    cancelContext();
    notify(new ApiError(error.code, `The file was not sent: ${error.message}`, error.details));
  }
}

function setContext(words, kind) {
  $("composer-context").hidden = false;
  $("composer-context").dataset.kind = kind ?? "busy";
  $("composer-context-text").textContent = words;
  $("composer-cancel").hidden = !kind;
}

function cancelContext() {
  if (state.editing) $("composer-input").value = "";
  state.replyTo = state.editing = null;
  $("composer-context").hidden = true;
}

function startReply(message) {
  state.editing = null;
  state.replyTo = message;
  setContext(`Replying to ${message.sender.username}: ${preview(message)}`, "reply");
  $("composer-input").focus();
}

function startEdit(message) {
  state.replyTo = null;
  state.editing = message;
  setContext("Editing your message (Escape cancels)", "edit");
  $("composer-input").value = message.content;
  $("composer-input").focus();
}

async function remove(message) {
  try {
    onDeleted(await emit("delete_message", { messageId: message.id }));
  } catch (error) {
    notify(error);
  }
}

// ---------------------------------------------------------------- rendering

function render({ stick = false } = {}) {
  renderChatList();
  renderHeader();
  renderMessages({ keep: stick ? "bottom" : "auto" });
  renderTyping();
}

function renderMe() {
  $("my-name").textContent = state.me?.username ?? "";
  const setting = state.me?.presence && state.me.presence !== "offline" ? state.me.presence : "online";
  $("my-status").value = setting;
  $("my-dot").dataset.presence = setting === "invisible" ? "offline" : setting;
}

function presenceOf(userId) {
  return state.presence.get(userId) ?? { status: "offline", lastSeen: null };
}

function preview(message) {
  if (!message) return "";
  if (message.deleted) return "Message deleted";
  const name = message.metadata?.filename ?? "a file";
  const labels = { image: `Photo: ${name}`, video: `Video: ${name}`, audio: `Audio: ${name}`, file: `File: ${name}` };
  const text = message.type === "text" ? message.content : `${labels[message.type] ?? name}${message.content ? ` (${message.content})` : ""}`;
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

function dot(presence, lastSeen = null) {
  const words = presence === "offline" && lastSeen ? `offline, last seen ${whenOf(lastSeen)}` : (PRESENCE_WORDS[presence] ?? "offline");
  return el("span", { class: "dot", dataset: { presence }, role: "img", "aria-label": words, title: words });
}

function sortedChats() {
  const when = (c) => c.lastMessage?.createdAt ?? c.lastActivity ?? c.updatedAt ?? "";
  return [...state.chats.values()].sort((a, b) => (when(b) > when(a) ? 1 : when(b) < when(a) ? -1 : 0));
}

function renderChatList() {
  const list = $("chat-list");
  const chats = sortedChats();
  $("no-chats").hidden = chats.length > 0;
  // a keyboard user's focus stays on the same chat when the list is redrawn
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.chatId : null;
  list.replaceChildren(
    ...chats.map((chat) => {
      const peer = peerOf(chat);
      const typists = [...(state.typing.get(chat.id)?.values() ?? [])];
      const last = chat.lastMessage;
      const lastText = typists.length
        ? `${typists.map((t) => t.username).join(", ")} typing…`
        : last
          ? `${last.senderId === state.me.id ? "You: " : chat.type === "group" ? `${last.sender.username}: ` : ""}${preview(last)}`
          : "No messages yet";
      const unread = chat.unreadCount ?? 0;
      return el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: "chat-item",
            "aria-current": state.open === chat.id ? "true" : null,
            dataset: { chatId: chat.id, chatName: chatName(chat) },
            onclick: () => openChat(chat.id).catch(notify),
          },
          peer ? dot(presenceOf(peer.id).status, presenceOf(peer.id).lastSeen) : el("span", { class: "group-mark", "aria-hidden": "true", text: "#" }),
          el(
            "span",
            { class: "chat-main" },
            el("span", { class: "chat-name", text: chatName(chat) }),
            el("span", { class: typists.length ? "chat-preview typing-now" : "chat-preview", text: lastText }),
          ),
          el(
            "span",
            { class: "chat-side" },
            last ? el("time", { datetime: last.createdAt, text: timeOf(last.createdAt) }) : null,
            unread ? el("span", { class: "badge", "aria-label": `${unread} unread`, text: String(unread) }) : null,
          ),
        ),
      );
    }),
  );
  if (focused) list.querySelector(`[data-chat-id="${focused}"]`)?.focus();
}

function renderHeader() {
  const chat = state.chats.get(state.open);
  $("call-buttons").hidden = !chat;
  const line = $("chat-presence");
  if (!chat) {
    $("chat-title").textContent = "Pick a chat";
    line.replaceChildren();
    delete line.dataset.presence;
    return;
  }
  $("chat-title").textContent = chatName(chat);
  const peer = peerOf(chat);
  if (peer) {
    const { status, lastSeen } = presenceOf(peer.id);
    line.dataset.presence = status;
    const words = status === "offline" ? (lastSeen ? `offline, last seen ${whenOf(lastSeen)}` : "offline") : PRESENCE_WORDS[status];
    const mark = dot(status);
    mark.removeAttribute("role");
    mark.removeAttribute("aria-label");
    mark.setAttribute("aria-hidden", "true"); // the words beside it say the same
    line.replaceChildren(mark, " ", words);
  } else {
    delete line.dataset.presence;
    line.textContent = `${chat.participantCount ?? chat.participants.length} members: ${chat.participants.map((p) => p.username).join(", ")}`;
  }
}

function renderTyping() {
  const typists = [...(state.typing.get(state.open)?.values() ?? [])].map((t) => t.username);
  $("typing").textContent = typists.length ? `${typists.join(" and ")} ${typists.length > 1 ? "are" : "is"} typing…` : "";
}

function renderMessages({ keep = "auto" } = {}) {
  const box = $("history");
  const history = historyOf(state.open);
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
  const fromBottom = box.scrollHeight - box.scrollTop;
  $("load-older").hidden = !history?.older || !history.items.length;
  $("load-older").disabled = Boolean(history?.loading);
  $("load-older").textContent = history?.loading ? "Loading…" : "Load older messages";
  $("history-start").hidden = !history || history.older || history.loading;
  const byId = new Map((history?.items ?? []).filter((m) => m.id).map((m) => [m.id, m]));
  reconcile($("messages"), (history?.items ?? []).map((m) => messageNode(m, byId)));
  if (keep === "bottom" || (keep === "auto" && atBottom)) box.scrollTop = box.scrollHeight;
  else if (keep === "prepend") box.scrollTop = box.scrollHeight - fromBottom;
}

// Rendered messages are kept and reused while they do not change, so the live region announces
// only what is new and focus, images and open confirmations survive a redraw.
let rendered = new Map(); // key -> {signature, node}

function messageNode(m, byId) {
  const key = m.id ?? `client:${m.clientId}`;
  const original = m.replyTo ? byId.get(m.replyTo) : null;
  const signature = JSON.stringify([m.status, m.deleted, m.editedAt, m.content, m.metadata?.url, original ? preview(original) : null]);
  const kept = rendered.get(key);
  if (kept?.signature === signature) return kept.node;
  const node = renderMessage(m, byId);
  rendered.set(key, { signature, node });
  return node;
}

function reconcile(list, nodes) {
  const wanted = new Set(nodes);
  for (const child of [...list.children]) if (!wanted.has(child)) child.remove();
  nodes.forEach((node, i) => {
    if (list.children[i] !== node) list.insertBefore(node, list.children[i] ?? null);
  });
  if (rendered.size > nodes.length * 2 + 100) {
    rendered = new Map([...rendered].filter(([, { node }]) => wanted.has(node)));
  }
}

const TICKS = {
  pending: ["…", "Sending"],
  sent: ["✓", "Sent"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
};

function renderBody(m) {
  if (m.deleted) return el("p", { class: "deleted", text: "This message was deleted" });
  const url = UPLOAD_URL.test(m.metadata?.url ?? "") ? m.metadata.url : null;
  const caption = m.content ? el("p", { class: "text", text: m.content }) : null;
  const name = m.metadata?.filename ?? "file";
  if (m.type === "image" && url) {
    return el("figure", {}, el("a", { href: url, target: "_blank", rel: "noopener" }, el("img", { src: url, alt: name, loading: "lazy" })), caption);
  }
  if (m.type === "video" && url) return el("figure", {}, el("video", { src: url, controls: true, "aria-label": name }), caption);
  if (m.type === "audio" && url) return el("figure", {}, el("audio", { src: url, controls: true, "aria-label": name }), caption);
  if (url) {
    const size = m.metadata?.size ? ` (${sizeOf(m.metadata.size)})` : "";
    return el("div", {}, "File: ", el("a", { class: "file", href: url, download: name, text: `${name}${size}` }), caption);
  }
  return el("p", { class: "text", text: m.content });
}

function renderMessage(m, byId) {
  const mine = m.senderId === state.me.id;
  const original = m.replyTo ? byId.get(m.replyTo) : null;
  const actions = [];
  if (!m.deleted && !m.pending) {
    actions.push(el("button", { type: "button", text: "Reply", "aria-label": `Reply to ${m.sender.username}`, onclick: () => startReply(m) }));
    if (mine && m.type === "text") actions.push(el("button", { type: "button", text: "Edit", onclick: () => startEdit(m) }));
    if (mine) {
      const confirm = el(
        "span",
        { class: "confirm", hidden: true },
        "Delete for everyone? ",
        el("button", { type: "button", text: "Yes, delete", onclick: () => remove(m) }),
        el("button", {
          type: "button",
          text: "No",
          onclick: () => {
            confirm.hidden = true;
          },
        }),
      );
      const ask = el("button", {
        type: "button",
        text: "Delete",
        onclick: () => {
          confirm.hidden = false;
          confirm.querySelector("button").focus();
        },
      });
      actions.push(ask, confirm);
    }
  }
  const [tick, tickWords] = TICKS[m.status] ?? TICKS.sent;
  return el(
    "li",
    { class: mine ? "message mine" : "message", dataset: { id: m.id ?? "", clientId: m.clientId ?? "", status: m.status ?? "" } },
    el(
      "p",
      { class: "meta" },
      el("span", { class: "sender", text: mine ? "You" : m.sender.username }),
      " ",
      el("time", { datetime: m.createdAt, text: timeOf(m.createdAt) }),
      m.editedAt && !m.deleted ? el("span", { class: "edited", text: " (edited)" }) : null,
    ),
    m.replyTo
      ? el("blockquote", { class: "reply" }, original ? `${original.sender.username}: ${preview(original)}` : "A message further up")
      : null,
    renderBody(m),
    mine && !m.deleted ? el("span", { class: "ticks", dataset: { status: m.status }, role: "img", "aria-label": tickWords, title: tickWords, text: tick }) : null,
    actions.length ? el("div", { class: "actions" }, ...actions) : null,
  );
}

// ---------------------------------------------------------------- people and groups

let searchTimer = null;
async function searchPeople() {
  const q = $("people-search").value.trim();
  if (!q) {
    $("people").replaceChildren();
    return;
  }
  try {
    const { users } = await session.call("GET", `/users?${new URLSearchParams({ search: q, limit: "10" })}`);
    if ($("people-search").value.trim() !== q) return;
    const others = users.filter((u) => u.id !== state.me.id);
    $("people").replaceChildren(
      ...(others.length
        ? others.map((u) =>
            el(
              "li",
              { dataset: { userId: u.id } },
              dot(u.presence, u.lastSeen),
              el("span", { class: "person", text: u.username }),
              el("button", { type: "button", text: "Message", "aria-label": `Message ${u.username}`, onclick: () => startChat(u) }),
              el(
                "label",
                { class: "pick" },
                el("input", {
                  type: "checkbox",
                  checked: state.picked.has(u.id),
                  onchange: (e) => pick(u, e.target.checked),
                }),
                ` Add ${u.username} to a new group`,
              ),
            ),
          )
        : [el("li", { class: "muted", text: "Nobody found" })]),
    );
  } catch (error) {
    notify(error);
  }
}

function pick(user, on) {
  if (on) state.picked.set(user.id, user.username);
  else state.picked.delete(user.id);
  $("group-form").hidden = state.picked.size === 0;
  $("group-count").textContent = String(state.picked.size);
}

async function startChat(user) {
  try {
    addChat(await session.call("POST", "/chats", { body: { type: "private", participants: [user.id] } }));
    $("people-search").value = "";
    $("people").replaceChildren();
    await openChat([...state.chats.values()].find((c) => c.type === "private" && peerOf(c)?.id === user.id).id);
  } catch (error) {
    notify(error);
  }
}

async function createGroup(event) {
  event.preventDefault();
  try {
    const chat = await session.call("POST", "/groups", { body: { name: $("group-name").value, participants: [...state.picked.keys()] } });
    addChat(chat);
    state.picked.clear();
    pick({}, false);
    $("group-name").value = "";
    $("people-search").value = "";
    $("people").replaceChildren();
    await openChat(chat.id);
  } catch (error) {
    notify(error);
  }
}

// ---------------------------------------------------------------- signing in and out

function showSignedIn() {
  $("auth-screen").hidden = true;
  $("chat-screen").hidden = false;
  state.me = session.user;
  renderMe();
  render();
  session.scheduleRefresh();
  connectSocket();
}

function showSignedOut(message = null) {
  socket?.disconnect();
  socket = null;
  ready = everReady = false;
  calls.teardown();
  Object.assign(state, { me: null, open: null, lastId: null, syncFrom: null, outbox: [], replyTo: null, editing: null });
  for (const key of ["chats", "history", "presence", "typing", "picked"]) state[key].clear();
  rendered.clear();
  $("chat-screen").hidden = true;
  $("auth-screen").hidden = false;
  $("connection").hidden = true;
  $("composer").hidden = true;
  $("messages").replaceChildren();
  if (message) notify(message, { level: message instanceof ApiError ? "error" : "info" });
  $("login-email").focus();
}

async function submitAuth(event, action) {
  event.preventDefault();
  const form = event.target;
  const data = Object.fromEntries(new FormData(form));
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    if (action === "login") await session.login(data.email, data.password);
    else await session.register(data.username, data.email, data.password);
    form.reset();
    showSignedIn();
  } catch (error) {
    notify(error);
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  socket?.disconnect();
  try {
    await session.logout();
  } catch (error) {
    notify(error);
  }
  showSignedOut(new Error("You are logged out."));
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("login-form").addEventListener("submit", (e) => submitAuth(e, "login"));
  $("register-form").addEventListener("submit", (e) => submitAuth(e, "register"));
  $("logout").addEventListener("click", logout);
  $("my-status").addEventListener("change", async (e) => {
    const status = e.target.value;
    try {
      const answer = await emit("update_status", { status });
      state.me.presence = answer.status;
    } catch (error) {
      notify(error);
    }
    renderMe();
  });
  $("people-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(searchPeople, 250);
  });
  $("group-form").addEventListener("submit", createGroup);
  $("composer").addEventListener("submit", submitComposer);
  $("composer-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    } else if (e.key === "Escape") {
      cancelContext();
    }
  });
  $("composer-input").addEventListener("input", typing);
  $("composer-cancel").addEventListener("click", () => {
    cancelContext();
    $("composer-input").focus();
  });
  $("attach").addEventListener("change", attach);
  $("load-older").addEventListener("click", () => loadOlder(state.open));
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.open) loadOlder(state.open);
  }, { root: $("history") }).observe($("load-older"));
  $("audio-call").addEventListener("click", () => calls.start(state.chats.get(state.open), "audio"));
  $("video-call").addEventListener("click", () => calls.start(state.chats.get(state.open), "video"));
  session.onEnded = (error) => showSignedOut(error);
  if (session.signedIn) showSignedIn();
  else showSignedOut();
}

wire();
