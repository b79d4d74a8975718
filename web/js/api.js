// REST and the login session: tokens live in sessionStorage (this tab only) and the access
// token is refreshed before it expires. Every failure becomes an ApiError with words to show.

const API = "/api/v1";
const STORE_KEY = "whatschat.session";

export class ApiError extends Error {
  constructor(code, message, details = null, status = 0) {
    super(message || "Something went wrong");
    this.code = code;
    this.details = details;
    this.status = status;
  }

  // "Validation failed: password: Length must be between 6 and 128."
  get words() {
    const parts = [];
    if (this.details && typeof this.details === "object") {
      for (const [field, problems] of Object.entries(this.details)) {
        if (field === "retryAfter") {
          parts.push(`try again in ${problems} s`);
        } else {
          const list = Array.isArray(problems) ? problems : [problems];
          parts.push(`${field}: ${list.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" ")}`);
        }
      }
    }
    return parts.length ? `${this.message}: ${parts.join("; ")}` : this.message;
  }
}

// What a failure envelope (REST or a Socket.IO ack) says, as an ApiError.
export function errorFrom(body, status = 0) {
  const error = body?.error ?? {};
  return new ApiError(error.code ?? "SYS_001", error.message ?? body?.message, error.details ?? null, status);
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

export class Session {
  constructor() {
    this.token = null;
    this.refreshToken = null;
    this.user = null;
    this.receivedAt = 0; // when this tab got the access token (its own clock)
    this.lifetime = 0; // seconds the access token lives (exp - iat)
    this.onEnded = () => {}; // the login is over (refresh refused): show the login form
    this.onRefreshed = () => {};
    this._timer = null;
    this._refreshing = null;
    try {
      const saved = JSON.parse(sessionStorage.getItem(STORE_KEY) ?? "null");
      if (saved?.token) Object.assign(this, saved);
    } catch {
      sessionStorage.removeItem(STORE_KEY);
    }
  }

  get signedIn() {
    return Boolean(this.token);
  }

  _keep({ token, refreshToken, user }) {
    this.token = token;
    this.refreshToken = refreshToken ?? this.refreshToken;
    if (user) this.user = user;
    const { iat, exp } = claims(token);
    this.lifetime = exp && iat ? exp - iat : 0;
    this.receivedAt = Date.now();
    this._save();
    this.scheduleRefresh();
  }

  _save() {
    const { token, refreshToken, user, receivedAt, lifetime } = this;
    sessionStorage.setItem(STORE_KEY, JSON.stringify({ token, refreshToken, user, receivedAt, lifetime }));
  }

  clear() {
    clearTimeout(this._timer);
    this.token = this.refreshToken = this.user = null;
    sessionStorage.removeItem(STORE_KEY);
  }

  // Refresh when 80 % of the access token's life has passed (measured on this tab's clock).
  scheduleRefresh(delay = null) {
    clearTimeout(this._timer);
    if (!this.token || !this.lifetime) return;
    const due = delay ?? this.lifetime * 800 - (Date.now() - this.receivedAt);
    this._timer = setTimeout(() => {
      this.refresh().catch(() => {});
    }, Math.max(1000, Math.min(due, 2 ** 31 - 1)));
  }

  get expired() {
    return this.lifetime > 0 && Date.now() - this.receivedAt >= this.lifetime * 1000;
  }

  // One refresh at a time; a network failure retries soon, a refusal ends the login.
  refresh() {
    if (!this._refreshing) {
      this._refreshing = this._refresh().finally(() => {
        this._refreshing = null;
      });
    }
    return this._refreshing;
  }

  async _refresh() {
    if (!this.refreshToken) throw new ApiError("AUTH_001", "You are signed out");
    let data;
    try {
      data = await request("POST", "/auth/refresh-token", { body: { refreshToken: this.refreshToken } });
    } catch (error) {
      if (error.status === 0 || error.status >= 500 || error.code === "RATE_001") {
        this.scheduleRefresh(3000); // offline or busy: keep trying while the token lasts
        throw error;
      }
      this.clear();
      this.onEnded(new ApiError(error.code, `Your session has ended (${error.message}). Please log in again.`));
      throw error;
    }
    this._keep(data);
    this.onRefreshed();
    return data;
  }

  async login(email, password) {
    this._keep(await request("POST", "/auth/login", { body: { email, password } }));
    return this.user;
  }

  async register(username, email, password) {
    this._keep(await request("POST", "/auth/register", { body: { username, email, password } }));
    return this.user;
  }

  async logout() {
    try {
      await this.call("POST", "/auth/logout");
    } finally {
      this.clear();
    }
  }

  // An authenticated REST call; an expired or refused token is refreshed once and the call retried.
  async call(method, path, options = {}) {
    if (this.expired) await this.refresh();
    try {
      return await request(method, path, { ...options, token: this.token });
    } catch (error) {
      if (error.code !== "AUTH_001" || !this.refreshToken || options.retried) throw error;
      await this.refresh();
      return this.call(method, path, { ...options, retried: true });
    }
  }
}

export async function request(method, path, { body, form, token, timeout = 15000, full = false } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (form) {
    payload = form;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, { method, headers, body: payload, signal: AbortSignal.timeout(timeout) });
  } catch (error) {
    const words = error?.name === "TimeoutError" ? "The server did not answer in time" : "Cannot reach the server";
    throw new ApiError("NETWORK", words, null, 0);
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    throw new ApiError("SYS_001", `The server answered ${response.status} ${response.statusText}`, null, response.status);
  }
  if (!response.ok || !answer?.success) throw errorFrom(answer, response.status);
  return full ? answer : answer.data;
}
