'use strict';

// Hooks for dm.yml: REST status checks and the send_message ack latency,
// which the socketio-v3 engine counts (engine.socketio.emit) but does not time.

const { performance } = require('node:perf_hooks');

// afterResponse: count each REST answer by status; anything but 2xx ends the virtual user.
function checkStatus(request, response, context, events, next) {
  events.emit('counter', `whatschat.http.${response.statusCode}`, 1);
  if (response.statusCode >= 300) {
    return next(new Error(`${request.method} ${request.url} answered ${response.statusCode}`));
  }
  return next();
}

function startClock(context, events, done) {
  context.vars.sentAt = performance.now();
  return done();
}

// Runs once the ack has arrived and matched `success: true`.
function stopClock(context, events, done) {
  events.emit('histogram', 'whatschat.send_message.ack_ms', performance.now() - context.vars.sentAt);
  events.emit('counter', 'whatschat.send_message.acked', 1);
  return done();
}

module.exports = { checkStatus, startClock, stopClock };
