// One socket.io-client socket that reports how a server's stop reached it.
//
//   node tests/node/reconnect.mjs http://127.0.0.1:3001 <access token>
//
// Prints "ready" once authenticated, then, on its first disconnect, one JSON line
// {reason, active} and exits: `active` says whether socket.io-client will reconnect by itself
// (after "io server disconnect" it does not). Every wait is bounded by TOTAL_MS.
import { io } from "socket.io-client";

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error("usage: node reconnect.mjs <serverUrl> <token>");
  process.exit(2);
}
const TOTAL_MS = 60000;
setTimeout(() => {
  console.log(JSON.stringify({ error: `no disconnect within ${TOTAL_MS} ms` }));
  process.exit(1);
}, TOTAL_MS).unref();

// a long first delay: the report is about the decision to reconnect, not the attempt
const socket = io(url, { auth: { token }, transports: ["websocket"], reconnectionDelay: 30000 });
socket.on("authenticated", () => console.log("ready"));
socket.on("unauthorized", (error) => {
  console.log(JSON.stringify({ error: `unauthorized: ${error.message}` }));
  process.exit(1);
});
socket.on("connect_error", (error) => {
  console.log(JSON.stringify({ error: `connect_error: ${error.message}` }));
  process.exit(1);
});
socket.on("disconnect", (reason) => {
  console.log(JSON.stringify({ reason, active: socket.active }));
  process.exit(0);
});
