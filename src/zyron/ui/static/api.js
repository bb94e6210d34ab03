// Zyron's native HTTP API from a browser: the token pair, JSON calls, and replies as Server-Sent
// Events read with fetch (EventSource cannot send an Authorization header or a body).

const TOKENS_KEY = "zyron.tokens";

/** An error answer: the HTTP status, Zyron's machine code and its sentence. */
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

/** A client of one Zyron server, signed in or a guest. */
export class Zyron {
  constructor(baseUrl = "", storage = window.localStorage) {
    this.baseUrl = baseUrl;
    this.storage = storage;
    this.tokens = this.storedTokens();
    this.refreshing = null; // one refresh at a time, shared by every request that needs it
    this.onSignedOut = () => {};
    // Another tab signed in, out, or refreshed the pair: use what it stored.
    window.addEventListener("storage", (event) => {
      if (event.key === TOKENS_KEY) this.tokens = this.storedTokens();
    });
  }

  get signedIn() {
    return this.tokens !== null;
  }

  async signUp(email, password) {
    this.storeTokens(await this.json("POST", "/auth/signup", { body: { email, password }, auth: false }));
  }

  async signIn(email, password) {
    this.storeTokens(await this.json("POST", "/auth/login", { body: { email, password }, auth: false }));
  }

  async signOut() {
    try {
      await this.request("POST", "/auth/logout");
    } finally {
      this.storeTokens(null);
    }
  }

  storedTokens() {
    return JSON.parse(this.storage.getItem(TOKENS_KEY) || "null");
  }

  /** Keep a pair from /auth/signup, /auth/login or /auth/refresh (null: forget it). */
  storeTokens(pair) {
    this.tokens = pair && { access: pair.access_token, refresh: pair.refresh_token };
    if (this.tokens) this.storage.setItem(TOKENS_KEY, JSON.stringify(this.tokens));
    else this.storage.removeItem(TOKENS_KEY);
  }

  /** A JSON call; an error answer throws ApiError. */
  async json(method, path, options = {}) {
    const response = await this.request(method, path, options);
    return response.status === 204 ? null : response.json();
  }

  /**
   * fetch with the access token; an expired one is refreshed once and the call repeated.
   * `body` is sent as JSON, or as is when it is FormData.
   */
  async request(method, path, { body, headers = {}, signal, auth = true } = {}) {
    const send = (access) => {
      const all = { ...headers };
      if (access) all.Authorization = `Bearer ${access}`;
      let payload = body;
      if (body !== undefined && !(body instanceof FormData)) {
        all["Content-Type"] = "application/json";
        payload = JSON.stringify(body);
      }
      return fetch(this.baseUrl + path, { method, headers: all, body: payload, signal });
    };
    const access = auth ? this.tokens?.access : undefined;
    let response = await send(access);
    if (response.status === 401 && access && (await this.refresh(access))) {
      response = await send(this.tokens.access);
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  /**
   * Replace the access token `refused` with a new pair; false (and signed out) when the server
   * refuses the refresh token. Tabs take turns: a refresh token works once, so a second tab
   * refreshing with it would end the login.
   */
  async refresh(refused) {
    this.refreshing ??= exclusive(TOKENS_KEY, async () => {
      this.tokens = this.storedTokens();
      if (this.tokens && this.tokens.access !== refused) return true; // done meanwhile
      if (!this.tokens) return false;
      const response = await fetch(this.baseUrl + "/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: this.tokens.refresh }),
      });
      if (response.ok) {
        this.storeTokens(await response.json());
        return true;
      }
      if (response.status !== 401) throw await errorOf(response); // the server, not the login
      this.storeTokens(null);
      this.onSignedOut();
      return false;
    }).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /**
   * Yield a reply's events, `{id, event, data}`, as they arrive. Errors before the stream starts
   * throw ApiError; `lastEventId` resumes after the event with that id.
   */
  async *stream(method, path, { body, lastEventId, signal } = {}) {
    const headers = { Accept: "text/event-stream" };
    if (lastEventId !== undefined) headers["Last-Event-ID"] = String(lastEventId);
    const response = await this.request(method, path, { body, headers, signal });
    yield* readEvents(response.body); // aborting `signal` ends the body, and so this
  }
}

/** Run `task` holding a lock every tab of this origin shares (where the browser has them). */
function exclusive(name, task) {
  return navigator.locks ? navigator.locks.request(name, task) : task();
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.error, body.detail);
  } catch {
    return new ApiError(response.status, "http_error", `HTTP ${response.status}`);
  }
}

/** Parse a text/event-stream body into events; comment lines (`: ping`) keep it open only. */
export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { id: undefined, event: "message", data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (!done) buffer += value;
      // A "\r" at the very end may be half of a "\r\n": it waits for the next chunk, if any.
      const end = !done && buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, end).split(/\r\n|\r|\n/);
      buffer = lines.pop() + buffer.slice(end); // an unfinished line waits too
      for (const line of lines) {
        if (line === "") {
          const data = event.data.join("\n");
          if (data) yield { id: event.id, event: event.event, data: JSON.parse(data) };
          event = { id: undefined, event: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") event.data.push(text);
        else if (field === "event") event.event = text;
        else if (field === "id") event.id = Number(text);
      }
      if (done) return; // an event without its blank line is dropped, as EventSource does
    }
  } finally {
    reader.cancel().catch(() => {}); // a reader that stops early stops the download too
  }
}
