// Audio and video calls: the server's call state machine (start/answer/reject/end_call and
// call_status_update) plus WebRTC between browsers, signalled through webrtc_offer/answer/ice_candidate.
// The caller offers to each participant once they answer; media flows peer to peer.
import { $ } from "./dom.js";

const OVER = new Set(["completed", "rejected", "missed", "cancelled"]);
const ENDINGS = {
  completed: "Call ended",
  rejected: "Call declined",
  missed: "No answer",
  cancelled: "Call cancelled",
};

export class Calls {
  // emit(event, payload) -> Promise of the ack data; notify(error) shows an error; me() is the user
  constructor({ emit, notify, me }) {
    this.emit = emit;
    this.notify = notify;
    this.me = me;
    this.call = null; // the live call as the server last described it
    this.peers = new Map(); // userId -> {pc, pending: [ice candidates before the remote description]}
    this.local = null; // MediaStream from the camera / microphone
    this._media = null; // the getUserMedia promise, so answering and an early offer ask once
    this.early = new Map(); // userId -> ICE candidates that came before their offer
    this.shown = null; // the call the panel describes (kept after it ends, for its last words)
    this.state = "idle";
    this._hideTimer = null;
    $("call-answer").addEventListener("click", () => this.answer());
    $("call-reject").addEventListener("click", () => this.reject());
    $("call-end").addEventListener("click", () => this.end());
  }

  get busy() {
    return this.call !== null;
  }

  others(call = this.call) {
    return (call?.participants ?? []).filter((p) => p.id !== this.me().id);
  }

  show(state, words, { answer = false, reject = false, end = false } = {}) {
    clearTimeout(this._hideTimer);
    this.state = state;
    const panel = $("call");
    panel.hidden = false;
    panel.dataset.callState = state;
    if (this.call) this.shown = this.call;
    const names = this.others(this.shown).map((p) => p.username).join(", ") || "…";
    $("call-title").textContent = `${this.shown?.type === "audio" ? "Audio" : "Video"} call with ${names}`;
    $("call-state").textContent = words;
    $("call-answer").hidden = !answer;
    $("call-reject").hidden = !reject;
    $("call-end").hidden = !end;
    panel.classList.toggle("audio-only", this.shown?.type === "audio");
    const focus = answer ? "call-answer" : end ? "call-end" : null;
    if (focus && !panel.contains(document.activeElement)) $(focus).focus();
  }

  media(type) {
    this._media ??= navigator.mediaDevices.getUserMedia({ audio: true, video: type === "video" }).then(
      (stream) => {
        this.local = stream;
        if (type === "video") $("local-video").srcObject = stream;
        return stream;
      },
      (error) => {
        this._media = null;
        const what = type === "video" ? "camera or microphone" : "microphone";
        throw new Error(`Cannot use your ${what}: ${error.message}`);
      },
    );
    return this._media;
  }

  async start(chat, type) {
    if (this.busy) return this.notify(new Error("You are already in a call"));
    try {
      await this.media(type);
      this.call = await this.emit("start_call", { type, chatId: chat.id });
      this.show("ringing", `Calling ${this.others().map((p) => p.username).join(", ")}…`, { end: true });
    } catch (error) {
      this.notify(error);
      this.teardown();
    }
  }

  incoming(call) {
    if (this.call && this.call.id !== call.id) return; // the server already answered `busy` for us
    this.call = call;
    const who = call.participants.find((p) => p.id === call.initiatorId)?.username ?? "Someone";
    this.show("incoming", `${who} is calling (${call.type})`, { answer: true, reject: true });
  }

  async answer() {
    const call = this.call;
    if (!call) return;
    this.show("connecting", "Connecting…", { end: true });
    try {
      await this.media(call.type);
      this.call = await this.emit("answer_call", { callId: call.id });
    } catch (error) {
      this.notify(error);
      if (this.call) this.emit("reject_call", { callId: call.id }).catch(() => {});
      this.teardown();
    }
  }

  async reject() {
    if (!this.call) return;
    const callId = this.call.id;
    this.finish("Call declined");
    try {
      await this.emit("reject_call", { callId });
    } catch (error) {
      this.notify(error);
    }
  }

  async end() {
    if (!this.call) return;
    const callId = this.call.id;
    try {
      await this.emit("end_call", { callId });
      // call_status_update follows and tears the call down; an answer that says it is over does too
    } catch (error) {
      this.notify(error);
      this.finish("Call ended");
    }
  }

  // call_status_update: every change of the call, for every participant
  async update(call) {
    if (!this.call || this.call.id !== call.id) return;
    this.call = call;
    if (OVER.has(call.status)) {
      const seconds = call.duration ?? 0;
      const length = call.status === "completed" && call.startedAt ? ` (${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")})` : "";
      this.finish(`${ENDINGS[call.status]}${length}`);
      return;
    }
    const mine = call.participants.find((p) => p.id === this.me().id);
    if (mine && (mine.status === "left" || mine.status === "rejected" || mine.status === "missed")) {
      this.finish("Call ended");
      return;
    }
    for (const p of call.participants) {
      if (p.id !== this.me().id && p.status !== "answered" && p.status !== "invited") this.closePeer(p.id);
    }
    if (call.status === "ongoing" && call.initiatorId === this.me().id) {
      // the caller offers to everyone who answered and has no connection yet
      for (const p of this.others(call)) {
        if (p.status === "answered" && !this.peers.has(p.id)) await this.offer(p.id);
      }
      if (this.state === "ringing") this.show("connecting", "Connecting…", { end: true });
    }
  }

  peer(userId) {
    let peer = this.peers.get(userId);
    if (peer) return peer;
    const pc = new RTCPeerConnection({ iceServers: [] });
    peer = { pc, pending: this.early.get(userId) ?? [] };
    this.early.delete(userId);
    this.peers.set(userId, peer);
    const callId = this.call.id;
    for (const track of this.local?.getTracks() ?? []) pc.addTrack(track, this.local);
    pc.addEventListener("icecandidate", ({ candidate }) => {
      if (candidate) {
        this.emit("webrtc_ice_candidate", { callId, to: userId, candidate: candidate.toJSON() }).catch((e) => this.notify(e));
      }
    });
    pc.addEventListener("track", ({ streams, track }) => {
      // one element plays the other side: the video element (sound included) or, for audio calls, the audio one
      const stream = streams[0] ?? new MediaStream([track]);
      const target = this.call?.type === "video" ? $("remote-video") : $("remote-audio");
      if (target.srcObject !== stream) target.srcObject = stream;
    });
    pc.addEventListener("connectionstatechange", () => {
      if (this.peers.get(userId)?.pc !== pc) return;
      if (pc.connectionState === "connected") this.show("connected", "Connected", { end: true });
      else if (pc.connectionState === "failed") {
        this.notify(new Error("The call's media connection failed"));
        this.end();
      } else if (pc.connectionState === "disconnected" && this.state === "connected") {
        this.show("connecting", "Reconnecting…", { end: true });
      }
    });
    return peer;
  }

  async offer(userId) {
    try {
      const { pc } = this.peer(userId);
      await pc.setLocalDescription(await pc.createOffer());
      await this.emit("webrtc_offer", { callId: this.call.id, to: userId, sdp: pc.localDescription.toJSON() });
    } catch (error) {
      this.notify(error);
    }
  }

  async onOffer({ callId, from, sdp }) {
    if (this.call?.id !== callId) return;
    try {
      await this.media(this.call.type);
      const peer = this.peer(from);
      await peer.pc.setRemoteDescription(sdp);
      await this.flush(peer);
      await peer.pc.setLocalDescription(await peer.pc.createAnswer());
      await this.emit("webrtc_answer", { callId, to: from, sdp: peer.pc.localDescription.toJSON() });
    } catch (error) {
      this.notify(error);
    }
  }

  async onAnswer({ callId, from, sdp }) {
    const peer = this.call?.id === callId ? this.peers.get(from) : null;
    if (!peer) return;
    try {
      await peer.pc.setRemoteDescription(sdp);
      await this.flush(peer);
    } catch (error) {
      this.notify(error);
    }
  }

  async onIce({ callId, from, candidate }) {
    if (this.call?.id !== callId || !candidate) return;
    const peer = this.peers.get(from);
    if (!peer) {
      this.early.set(from, [...(this.early.get(from) ?? []), candidate]);
      return;
    }
    if (!peer.pc.remoteDescription) {
      peer.pending.push(candidate);
      return;
    }
    await peer.pc.addIceCandidate(candidate).catch((error) => this.notify(error));
  }

  async flush(peer) {
    for (const candidate of peer.pending.splice(0)) {
      await peer.pc.addIceCandidate(candidate).catch((error) => this.notify(error));
    }
  }

  closePeer(userId) {
    const peer = this.peers.get(userId);
    if (!peer) return;
    this.peers.delete(userId);
    peer.pc.close();
  }

  // The call is over for us: show why for a moment, release the camera and the connections.
  finish(words) {
    this.teardown();
    this.show("ended", words);
    this._hideTimer = setTimeout(() => {
      if (this.state === "ended") {
        $("call").hidden = true;
        this.state = "idle";
        $("call").dataset.callState = "idle";
      }
    }, 4000);
  }

  teardown() {
    for (const userId of [...this.peers.keys()]) this.closePeer(userId);
    for (const track of this.local?.getTracks() ?? []) track.stop();
    this._media?.then((stream) => stream.getTracks().forEach((track) => track.stop())).catch(() => {});
    this.local = this._media = null;
    this.early.clear();
    for (const id of ["local-video", "remote-video", "remote-audio"]) $(id).srcObject = null;
    this.call = null;
    if (this.state !== "ended") {
      $("call").hidden = true;
      $("call").dataset.callState = "idle";
      this.state = "idle";
    }
  }
}
