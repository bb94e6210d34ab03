// The chat page: plain DOM on Zyron's native API (api.js), no framework and no build step.
// State lives in `state`; render() draws it, paint() redraws one message while it streams.

import { ApiError, Zyron } from "./api.js";
import { Tree } from "./tree.js";

const api = new Zyron();
const $ = (id) => document.getElementById(id);
const MODEL_KEY = "zyron.model";
const PAGE = 100; // messages per request when a session is opened
const RESUME_ATTEMPTS = 5; // a dropped stream is picked up again this many times

const state = {
  guest: false,
  me: null,
  models: [],
  sessions: [],
  sessionId: null,
  tree: new Tree(),
  leafId: null, // the last message of the path on screen
  pending: [], // attachments for the next message: {file_id?, media_type, filename, size, data?}
  uploading: 0,
  loading: false, // a session's messages are on their way
  renaming: null, // the id of the session whose title is being edited
  // The stream being read: {abort, replyId, stopAsked}. It stays open after `done` while the
  // title may still come; `reply` is the same object only while the reply is in progress.
  stream: null,
  reply: null,
};

// ---------------------------------------------------------------------------------------------
// Start, sign-in and sign-out

async function start() {
  api.onSignedOut = () => {
    reset();
    showAuth("Your sign-in has expired: sign in again.");
  };
  wire();
  try {
    const list = await api.json("GET", "/models", { auth: false });
    state.models = list.models;
    fillModels(list.default);
  } catch (error) {
    banner(error);
  }
  if (!api.signedIn) return showAuth();
  try {
    state.me = await api.json("GET", "/auth/me");
    await enter();
  } catch (error) {
    const expired = error instanceof ApiError && error.status === 401;
    if (expired) api.storeTokens(null);
    showAuth(expired ? "Your sign-in has expired: sign in again." : error.message);
  }
}

function showAuth(message = "") {
  closeStream();
  $("app").hidden = true;
  $("auth").hidden = false;
  $("auth-error").textContent = message;
  $("auth-form").email.focus();
}

async function authenticate(event) {
  event.preventDefault();
  const form = event.target;
  const action = event.submitter?.value ?? "signin";
  $("auth-error").textContent = "";
  try {
    if (action === "signup") await api.signUp(form.email.value, form.password.value);
    else await api.signIn(form.email.value, form.password.value);
    state.me = await api.json("GET", "/auth/me");
    state.guest = false;
    form.password.value = "";
    await enter();
  } catch (error) {
    $("auth-error").textContent = error.message;
  }
}

async function enterAsGuest() {
  state.guest = true;
  state.me = null;
  await enter();
}

async function enter() {
  $("auth").hidden = true;
  $("app").hidden = false;
  $("account").textContent = state.guest ? "Sign in" : "Sign out";
  $("sessions").hidden = state.guest;
  state.loading = true; // nothing is sent before the page knows where it is
  renderComposer();
  await Promise.all([loadSessions(), loadUsage()]);
  await openSession(state.guest ? null : sessionInUrl());
  // Last: who is signed in shows once the page is ready for them.
  $("who").textContent = state.guest ? "Guest: nothing is saved" : state.me.email;
}

async function leave() {
  if (!state.guest) await api.signOut().catch(() => {});
  reset();
  showAuth();
}

/** Forget everything of the account or guest that leaves. */
function reset() {
  closeStream();
  for (const url of fileUrls.values()) url.then(URL.revokeObjectURL, () => {});
  fileUrls.clear();
  Object.assign(state, { guest: false, me: null, sessions: [], sessionId: null, tree: new Tree() });
  Object.assign(state, { leafId: null, pending: [], renaming: null });
  $("composer").message.value = "";
  history.replaceState(null, "", "#");
}

// ---------------------------------------------------------------------------------------------
// Sessions: the list, opening one, renaming and deleting

function sessionInUrl() {
  const match = location.hash.match(/^#\/chat\/([0-9a-f-]{36})$/);
  return match ? match[1] : null;
}

async function loadSessions() {
  if (state.guest) return;
  try {
    state.sessions = await api.json("GET", "/sessions");
  } catch (error) {
    banner(error);
  }
  renderSessions();
}

async function loadUsage() {
  if (state.guest) return void ($("usage").textContent = "");
  try {
    const { quota } = await api.json("GET", "/usage?days=1");
    const limit = quota.daily_tokens === null ? "" : ` of ${quota.daily_tokens.toLocaleString()}`;
    $("usage").textContent = `Today: ${quota.used_today.toLocaleString()}${limit} tokens`;
  } catch (error) {
    banner(error);
  }
}

let opened = 0; // which call of openSession is the latest: an older one's answer is dropped

async function openSession(id) {
  const mine = ++opened;
  closeStream();
  banner(null);
  Object.assign(state, { sessionId: id, tree: new Tree(), leafId: null, loading: Boolean(id) });
  render();
  if (id) {
    try {
      const tree = new Tree(await allMessages(id));
      if (mine !== opened) return;
      state.tree = tree;
    } catch (error) {
      if (mine !== opened) return;
      banner(error);
      state.sessionId = null;
      history.replaceState(null, "", "#");
    }
    state.loading = false;
    state.leafId = state.tree.newest()?.id ?? null;
  }
  render();
  const leaf = state.leafId && state.tree.get(state.leafId);
  if (leaf?.role === "assistant" && leaf.status === "streaming") {
    // A reply still being written (this page was reloaded, or it runs elsewhere): replay it
    // from its start, then follow it live, on whichever replica produces it.
    await produce((signal) => api.stream("GET", `/chat/${leaf.id}/stream`, { signal }), () => {
      leaf.parts = [];
      return leaf;
    });
  }
}

/** Every message of a session, all branches, paging back from the newest. */
async function allMessages(id) {
  const messages = [];
  let before = "";
  for (;;) {
    const page = await api.json("GET", `/sessions/${id}/messages?tree=true&limit=${PAGE}${before}`);
    messages.unshift(...page);
    if (page.length < PAGE) return messages;
    before = `&before=${page[0].id}`;
  }
}

async function rename(session, title) {
  title = title.trim();
  if (!title || title === session.title) return renderSessions();
  try {
    Object.assign(session, await api.json("PATCH", `/sessions/${session.id}`, { body: { title } }));
  } catch (error) {
    banner(error);
  }
  renderSessions();
}

async function remove(session) {
  if (!confirm(`Delete "${session.title}" and its messages?`)) return;
  try {
    await api.json("DELETE", `/sessions/${session.id}`);
  } catch (error) {
    return banner(error);
  }
  state.sessions = state.sessions.filter((s) => s.id !== session.id);
  if (state.sessionId === session.id) location.hash = "";
  renderSessions();
}

// ---------------------------------------------------------------------------------------------
// Sending, regenerating, editing, stopping

function replyOptions() {
  const options = { model: $("model").value || undefined };
  const effort = $("thinking").value;
  if (effort && currentModel()?.reasoning) options.reasoning = { effort };
  return options;
}

/** Send `text` after `parentId` (null: as a first message): a new turn, or an edit. */
async function send(text, parentId, attachments, { fromComposer = false } = {}) {
  const body = { message: text, ...replyOptions() };
  if (state.guest) {
    body.history = guestHistory(parentId);
    if (attachments.length) body.attachments = attachments.map(inline);
  } else {
    if (state.sessionId) body.session_id = state.sessionId;
    body.parent_id = parentId;
    if (attachments.length) body.attachments = attachments.map((a) => a.file_id);
  }
  const parts = [{ type: "text", text }, ...attachments.map(filePart)];
  await produce(
    (signal) => api.stream("POST", "/chat", { body, signal }),
    (session) => {
      const question = state.tree.add({
        id: session.user_message_id ?? crypto.randomUUID(),
        parent_id: parentId,
        role: "user",
        parts,
        status: "complete",
        attachments, // a guest's, to send again with a regenerate or an edit
      });
      if (fromComposer) clearComposer();
      return newReply(session, question);
    },
  );
}

async function regenerate(reply) {
  if (state.reply) return;
  const question = state.tree.get(reply.parent_id);
  if (state.guest) {
    const body = { message: textOf(question), ...replyOptions() };
    body.history = guestHistory(question.parent_id);
    if (question.attachments?.length) body.attachments = question.attachments.map(inline);
    await produce((signal) => api.stream("POST", "/chat", { body, signal }), (s) => newReply(s, question));
    return;
  }
  await produce(
    (signal) => api.stream("POST", `/chat/${reply.id}/regenerate`, { body: replyOptions(), signal }),
    (session) => newReply(session, question),
  );
}

/** Guests keep the conversation themselves: the path up to `leafId` is the history. */
function guestHistory(leafId) {
  return state.tree
    .path(leafId)
    .filter((m) => textOf(m)) // a reply that failed before any text is not a turn
    .map((m) => ({ role: m.role, content: textOf(m) }));
}

function edit(question, text) {
  if (state.reply) return;
  return send(text, question.parent_id ?? null, attachmentsOf(question));
}

async function stop() {
  const reply = state.reply;
  if (!reply) return;
  if (state.guest) {
    reply.abort.abort(); // a guest's reply stops when its stream is closed
    return;
  }
  if (!reply.replyId) {
    reply.stopAsked = true; // cancelled as soon as the `session` event names it
    return;
  }
  try {
    // The stream then ends with `done`, stop_reason "cancelled", and the text is kept.
    await api.json("POST", `/chat/${reply.replyId}/cancel`);
  } catch (error) {
    banner(error);
  }
}

function newReply(session, question) {
  if (!state.guest && !state.sessionId) {
    state.sessionId = session.session_id;
    history.replaceState(null, "", `#/chat/${session.session_id}`);
    loadSessions();
  }
  return state.tree.add({
    id: session.assistant_message_id ?? crypto.randomUUID(),
    parent_id: question.id,
    role: "assistant",
    parts: [],
    status: "streaming",
  });
}

/**
 * Read a reply's stream into the tree. `open(signal)` starts it; `onSession(data)` returns the
 * reply message its `session` event names. A connection that drops before the reply ends is
 * resumed from the last event id (the reply goes on without us); errors before the stream
 * starts show in the banner.
 */
async function produce(open, onSession) {
  closeStream();
  banner(null);
  const stream = { abort: new AbortController(), replyId: null, stopAsked: false };
  const { signal } = stream.abort;
  state.stream = stream;
  state.reply = stream;
  render(); // Stop instead of Send; regenerate, edit and the branch arrows wait
  let reply = null;
  let lastId;
  let failures = 0;
  const ended = () => {
    if (state.reply !== stream) return;
    state.reply = null;
    $("status").textContent = `Reply ${reply?.status ?? "failed"}`;
    render();
  };
  try {
    for (;;) {
      try {
        const events = reply
          ? api.stream("GET", `/chat/${reply.id}/stream`, { lastEventId: lastId, signal })
          : open(signal);
        for await (const event of events) {
          failures = 0;
          lastId = event.id ?? lastId;
          if (event.event === "session") {
            if (reply) continue; // a resume from the start says it again
            reply = onSession(event.data);
            stream.replyId = reply.id;
            state.leafId = reply.id;
            render();
            if (stream.stopAsked) stop();
          } else if (apply(reply, event)) {
            ended(); // the stream stays open a little longer, for the title only
          }
        }
        if (reply?.status !== "streaming") return;
        throw new TypeError("the stream ended before the reply did");
      } catch (error) {
        if (signal.aborted) {
          if (reply?.status === "streaming" && state.guest) reply.status = "cancelled";
          return;
        }
        if (error instanceof ApiError || !reply || state.guest || ++failures > RESUME_ATTEMPTS) {
          if (reply?.status === "streaming") reply.status = "interrupted";
          banner(error);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** (failures - 1)));
      }
    }
  } finally {
    if (reply) paint(reply);
    ended();
    if (state.stream === stream) state.stream = null;
    if (!state.guest) {
      loadUsage();
      if (signal.aborted) loadSessions(); // the title event may have been cut off
    }
  }
}

/** Add one event to the reply; true when the reply has ended. */
function apply(reply, { event, data }) {
  switch (event) {
    case "reasoning":
    case "delta": {
      const type = event === "delta" ? "text" : "reasoning";
      const last = reply.parts.at(-1);
      if (last?.type === type) last.text += data.text;
      else reply.parts.push({ type, text: data.text });
      paint(reply);
      return false;
    }
    case "done":
      Object.assign(reply, {
        status: data.stop_reason === "cancelled" ? "cancelled" : "complete",
        stop_reason: data.stop_reason,
        model: data.model,
        usage: data.usage,
      });
      paint(reply);
      return true;
    case "error":
      // Text streamed before the failure is kept, as the server keeps it.
      Object.assign(reply, { status: reply.parts.length ? "interrupted" : "error", error: data.detail });
      paint(reply);
      return true;
    case "title": {
      const session = state.sessions.find((s) => s.id === data.session_id);
      if (session) session.title = data.title;
      else loadSessions(); // a new session the list has not caught up with yet
      renderSessions();
      return false;
    }
    default:
      return false;
  }
}

/** Stop reading the open stream (the reply itself goes on, unless it is a guest's). */
function closeStream() {
  state.stream?.abort.abort();
  state.stream = null;
  state.reply = null;
}

// ---------------------------------------------------------------------------------------------
// Attachments

async function attach(files) {
  for (const file of files) {
    state.uploading++;
    renderComposer();
    try {
      if (state.guest) {
        // Guests send files inline, as base64; nothing is stored.
        const data = await base64(file);
        state.pending.push({ media_type: file.type, filename: file.name, size: file.size, data });
      } else {
        const form = new FormData();
        form.append("file", file);
        const stored = await api.json("POST", "/files", { body: form });
        state.pending.push({ ...stored, file_id: stored.id });
      }
    } catch (error) {
      banner(new Error(`${file.name}: ${error.message}`));
    } finally {
      state.uploading--;
      renderComposer();
    }
  }
}

function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function inline(a) {
  return { media_type: a.media_type, data: a.data, filename: a.filename };
}

function filePart(a) {
  return { type: "file", file_id: a.file_id, media_type: a.media_type, filename: a.filename, size: a.size, data: a.data };
}

/** What an edit sends again: the question's files (a guest's kept in memory). */
function attachmentsOf(question) {
  if (state.guest) return question.attachments ?? [];
  return question.parts.filter((p) => p.type === "file" && !p.missing);
}

const fileUrls = new Map(); // file id -> a promise of an object URL for its bytes

function fileUrl(part) {
  if (part.data) return Promise.resolve(`data:${part.media_type};base64,${part.data}`);
  if (!fileUrls.has(part.file_id)) {
    // <img src> cannot send the Authorization header: fetch the bytes, show them as a blob.
    const url = api.request("GET", `/files/${part.file_id}`).then(async (r) => URL.createObjectURL(await r.blob()));
    fileUrls.set(part.file_id, url);
    url.catch(() => fileUrls.delete(part.file_id));
  }
  return fileUrls.get(part.file_id);
}

// ---------------------------------------------------------------------------------------------
// Drawing

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  append(node, ...children);
  return node;
}

/** Append what is there: a missing child (null, undefined, false) is skipped, not "null". */
function append(node, ...children) {
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
}

function textOf(message) {
  return message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
}

function currentModel() {
  return state.models.find((m) => m.id === $("model").value);
}

function fillModels(defaultId) {
  const saved = localStorage.getItem(MODEL_KEY);
  const chosen = state.models.some((m) => m.id === saved) ? saved : defaultId;
  $("model").replaceChildren(
    ...state.models.map((m) => el("option", { value: m.id, selected: m.id === chosen }, m.id)),
  );
  renderComposer();
}

function renderSessions() {
  if (state.renaming) return; // not under the fingers of someone typing a title
  $("sessions").replaceChildren(
    ...state.sessions.map((session) => {
      const current = session.id === state.sessionId;
      const item = el("li", { class: current ? "session current" : "session" });
      const open = el(
        "a",
        { href: `#/chat/${session.id}`, class: "title", "aria-current": current ? "page" : null },
        session.title,
      );
      const startRename = () => {
        const input = el("input", { value: session.title, "aria-label": "New title", maxlength: 200 });
        const finish = (save) => {
          if (state.renaming !== session.id) return;
          state.renaming = null;
          if (save) rename(session, input.value);
          else renderSessions();
        };
        input.addEventListener("keydown", (e) => {
          if (e.key === "Enter") finish(true);
          if (e.key === "Escape") finish(false);
        });
        input.addEventListener("blur", () => finish(true));
        state.renaming = session.id;
        item.replaceChildren(input);
        input.select();
      };
      item.append(
        open,
        el("button", { class: "icon", title: "Rename", "aria-label": `Rename ${session.title}`, onclick: startRename }, "✎"),
        el("button", { class: "icon", title: "Delete", "aria-label": `Delete ${session.title}`, onclick: () => remove(session) }, "×"),
      );
      return item;
    }),
  );
  const session = state.sessions.find((s) => s.id === state.sessionId);
  $("chat-title").textContent = session ? session.title : state.guest ? "Guest chat" : "New chat";
}

function render() {
  const path = state.leafId ? state.tree.path(state.leafId) : [];
  $("messages").replaceChildren(...path.map(messageView));
  $("empty").hidden = path.length > 0;
  renderSessions();
  renderComposer();
  scrollDown(true);
}

let painting = new Set();

/** Redraw one message at the next frame: many deltas, one redraw. */
function paint(message) {
  if (painting.size === 0) requestAnimationFrame(flushPaint);
  painting.add(message);
}

function flushPaint() {
  const stuck = nearBottom();
  for (const message of painting) {
    document.querySelector(`[data-id="${message.id}"]`)?.replaceWith(messageView(message));
  }
  painting = new Set();
  if (stuck) scrollDown(true);
}

function messageView(message) {
  const item = el("li", { class: `message ${message.role}`, "data-id": message.id, "data-status": message.status });
  append(
    item,
    branchSwitcher(message),
    ...message.parts.map(partView),
    message.status === "streaming" && !message.parts.length && el("p", { class: "typing" }, "…"),
    message.error && el("p", { class: "error" }, message.error),
    footer(message),
  );
  return item;
}

function partView(part) {
  if (part.type === "reasoning") {
    // Thinking is shown collapsed: the answer is what most readers want.
    const text = part.redacted ? "(the provider withheld this thinking)" : part.text;
    const ontoggle = (event) => (part.open = event.target.open); // kept across redraws
    return el(
      "details",
      { class: "thinking", open: part.open, ontoggle },
      el("summary", {}, "Thinking"),
      el("div", { class: "text" }, text),
    );
  }
  if (part.type === "file") return fileView(part);
  return el("div", { class: "text" }, part.text);
}

function fileView(part) {
  const name = part.filename || part.media_type;
  if (part.missing) return el("p", { class: "file missing" }, `${name} (deleted)`);
  const download = async () => el("a", { href: await fileUrl(part), download: name }).click();
  const chip = el("button", { type: "button", class: "file", title: `Download ${name}`, onclick: download }, name);
  if (part.media_type.startsWith("image/")) {
    const image = el("img", { alt: name });
    fileUrl(part).then((url) => (image.src = url), () => {});
    chip.prepend(image);
  }
  return chip;
}

function branchSwitcher(message) {
  const siblings = state.tree.siblings(message.id);
  if (siblings.length < 2) return null;
  const index = siblings.findIndex((m) => m.id === message.id);
  const go = (step) => () => {
    state.leafId = state.tree.leafUnder(siblings[index + step].id);
    render();
  };
  const busy = state.reply !== null;
  return el(
    "nav",
    { class: "branches", "aria-label": "Versions" },
    el("button", { "aria-label": "Previous version", disabled: busy || index === 0, onclick: go(-1) }, "‹"),
    el("span", {}, `${index + 1}/${siblings.length}`),
    el("button", { "aria-label": "Next version", disabled: busy || index === siblings.length - 1, onclick: go(1) }, "›"),
  );
}

function footer(message) {
  const busy = state.reply !== null;
  const bits = [];
  if (message.role === "assistant") {
    if (message.model) bits.push(message.model);
    if (message.usage) bits.push(usageText(message.usage));
    if (["cancelled", "interrupted", "error"].includes(message.status)) bits.push(message.status);
  }
  const actions = [];
  if (message.role === "assistant" && message.status !== "streaming") {
    actions.push(el("button", { class: "action", disabled: busy, onclick: () => regenerate(message) }, "Regenerate"));
  }
  if (message.role === "user") {
    actions.push(el("button", { class: "action", disabled: busy, onclick: () => startEdit(message) }, "Edit"));
  }
  return el("footer", {}, el("span", { class: "usage" }, bits.join(" · ")), ...actions);
}

/** "1,200 in (1,000 cached) · 80 out": the whole prompt, however it was billed. */
function usageText(usage) {
  const read = usage.cache_read_input_tokens ?? 0;
  const prompt = usage.input_tokens + (usage.cache_creation_input_tokens ?? 0) + read;
  const cached = read ? ` (${read.toLocaleString()} cached)` : "";
  return `${prompt.toLocaleString()} in${cached} · ${usage.output_tokens.toLocaleString()} out`;
}

function startEdit(question) {
  const item = document.querySelector(`[data-id="${question.id}"]`);
  const box = el("textarea", { "aria-label": "Edit message", rows: 3 });
  box.value = textOf(question);
  const save = el("button", { class: "primary", type: "submit" }, "Send");
  const cancel = el("button", { type: "button", onclick: render }, "Cancel");
  const form = el("form", { class: "edit" }, box, el("div", { class: "row" }, cancel, save));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (box.value.trim()) edit(question, box.value);
  });
  item.replaceChildren(form);
  box.focus();
}

function renderComposer() {
  const busy = state.reply !== null;
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("send").disabled = state.uploading > 0 || state.loading;
  $("thinking").hidden = !currentModel()?.reasoning;
  $("attachments").replaceChildren(
    ...state.pending.map((a, i) =>
      el(
        "li",
        { class: "file" },
        a.filename || a.media_type,
        el("button", { class: "icon", "aria-label": `Remove ${a.filename}`, onclick: () => {
          state.pending.splice(i, 1);
          renderComposer();
        } }, "×"),
      ),
    ),
  );
  if (state.uploading) $("attachments").append(el("li", { class: "file" }, "Uploading…"));
}

function clearComposer() {
  $("composer").message.value = "";
  state.pending = [];
  renderComposer();
}

function banner(error) {
  $("banner").hidden = !error;
  $("banner").textContent = error ? error.message || String(error) : "";
}

function nearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollDown(force) {
  if (force || nearBottom()) $("messages").scrollTop = $("messages").scrollHeight;
}

// ---------------------------------------------------------------------------------------------
// Wiring the page's fixed elements

function wire() {
  $("auth-form").addEventListener("submit", authenticate);
  $("guest").addEventListener("click", enterAsGuest);
  $("account").addEventListener("click", leave);
  $("new-chat").addEventListener("click", () => {
    if (location.hash && !state.guest) location.hash = "";
    else openSession(null);
  });
  $("stop").addEventListener("click", stop);
  $("file").addEventListener("change", (event) => {
    attach([...event.target.files]);
    event.target.value = "";
  });
  $("model").addEventListener("change", () => {
    localStorage.setItem(MODEL_KEY, $("model").value);
    renderComposer();
  });
  const composer = $("composer");
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = composer.message.value;
    if (!text.trim() || state.reply || state.uploading || state.loading) return;
    send(text, state.leafId, state.pending, { fromComposer: true });
  });
  composer.message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  window.addEventListener("hashchange", () => {
    if (!state.guest && api.signedIn && sessionInUrl() !== state.sessionId) openSession(sessionInUrl());
  });
}

start();
