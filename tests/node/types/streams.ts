// The stream events of Zyron's OpenAPI document as TypeScript: the native reply stream
// (`ReplyStreamEvent`, told apart by `event`) and the AI SDK UI message stream
// (`UIMessageChunk`, told apart by `type`), narrowed the way a client reads them. Compiled like
// check.ts by tests/api/test_typescript_types.py; each `@ts-expect-error` must be an error.
import type { UIMessageChunk as SdkUIMessageChunk } from "ai";
import type { components } from "zyron-openapi";

type Schemas = components["schemas"];
export type ReplyStreamEvent = Schemas["ReplyStreamEvent"];
export type UIMessageChunk = Schemas["UIMessageChunk"];

// The README's example reply's usage, in both streams.
const USAGE = {
  input_tokens: 12,
  output_tokens: 9,
  cache_creation_input_tokens: 0,
  cache_read_input_tokens: 0,
  reasoning_tokens: null,
} satisfies Schemas["Usage"];

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;

// Exactly the kinds Zyron sends.
export type EventKinds = Assert<
  Equal<ReplyStreamEvent["event"], "session" | "reasoning" | "delta" | "done" | "error" | "title">
>;
export type ChunkTypes = Assert<
  Equal<
    UIMessageChunk["type"],
    | "start"
    | "start-step"
    | "text-start"
    | "text-delta"
    | "text-end"
    | "reasoning-start"
    | "reasoning-delta"
    | "reasoning-end"
    | "finish-step"
    | "finish"
    | "abort"
    | "error"
  >
>;

/** What a client keeps of a reply while its native events come. */
export interface Reply {
  lastEventId: string | null;
  sessionId: string | null;
  replyId: string | null;
  thinking: string;
  text: string;
  ended: "done" | "error" | null;
  title: string | null;
}

export function onEvent(reply: Reply, event: ReplyStreamEvent): Reply {
  // The id to send as Last-Event-ID when resuming (GET /chat/{message_id}/stream).
  const lastEventId: string = event.id;
  const next = { ...reply, lastEventId };
  switch (event.event) {
    case "session": {
      const data: Schemas["SessionEventData"] = event.data;
      const saved: boolean = data.saved;
      const userMessageId: string | null = data.user_message_id;
      void userMessageId;
      return { ...next, sessionId: saved ? data.session_id : null, replyId: data.assistant_message_id };
    }
    case "reasoning": {
      const data: Schemas["ReasoningEventData"] = event.data;
      return { ...next, thinking: next.thinking + data.text };
    }
    case "delta": {
      const data: Schemas["DeltaEventData"] = event.data;
      return { ...next, text: next.text + data.text };
    }
    case "done": {
      const data: Schemas["DoneEventData"] = event.data;
      const stop: string | null = data.stop_reason;
      const model: string | null = data.model;
      const tokens: number = data.usage.input_tokens + data.usage.output_tokens;
      const thinking: number | null | undefined = data.usage.reasoning_tokens;
      const cost: number | null = data.cost_usd;
      const turns: [number | null, number | null] = [data.turns_sent, data.turns_omitted];
      void [stop, model, tokens, thinking, cost, turns];
      return { ...next, replyId: data.message_id, ended: "done" };
    }
    case "error": {
      const data: Schemas["ErrorEventData"] = event.data;
      const code: string = data.error;
      const detail: string = data.detail;
      const retryable: boolean = data.retryable;
      void [code, detail, retryable];
      return { ...next, replyId: data.message_id, ended: "error" };
    }
    case "title": {
      const data: Schemas["TitleEventData"] = event.data;
      const sessionId: string = data.session_id;
      return { ...next, sessionId, title: data.title };
    }
    default: {
      const unreachable: never = event;
      return unreachable;
    }
  }
}

// The README's stream, as the schema types it (ids are strings, as SSE sends them).
export const stream = [
  {
    id: "0",
    event: "session",
    data: {
      session_id: "4f0c8a3e-6d4b-4c1a-9b7e-1d2c3b4a5f60",
      user_message_id: "9a1e2b3c-4d5e-4f60-8a9b-0c1d2e3f4a50",
      assistant_message_id: "c27b5e1a-3f2d-4e6c-8a9b-0c1d2e3f4a50",
      saved: true,
    },
  },
  { id: "5", event: "delta", data: { text: "Hello" } },
  { id: "22", event: "delta", data: { text: "! How can I help?" } },
  {
    id: "23",
    event: "done",
    data: {
      message_id: "c27b5e1a-3f2d-4e6c-8a9b-0c1d2e3f4a50",
      stop_reason: "end_turn",
      model: "claude-sonnet-5",
      usage: USAGE,
      cost_usd: 0.000114,
      turns_sent: 0,
      turns_omitted: 0,
    },
  },
  {
    id: "24",
    event: "title",
    data: { session_id: "4f0c8a3e-6d4b-4c1a-9b7e-1d2c3b4a5f60", title: "Greetings" },
  },
] satisfies ReplyStreamEvent[];
export const guestError = {
  id: "1",
  event: "error",
  data: { error: "upstream_error", detail: "The model failed.", retryable: true, message_id: null },
} satisfies ReplyStreamEvent;
// @ts-expect-error: a delta carries its text
export const deltaWithoutText: ReplyStreamEvent = { id: "6", event: "delta", data: {} };
// @ts-expect-error: a delta carries its text only
export const deltaWithMore: ReplyStreamEvent = { id: "6", event: "delta", data: { text: "x", stop_reason: "end_turn" } };
// @ts-expect-error: no such event
export const thinkingEvent: ReplyStreamEvent = { id: "7", event: "thinking", data: { text: "x" } };
// @ts-expect-error: ids are strings
export const numericId: ReplyStreamEvent = { id: 7, event: "delta", data: { text: "x" } };
// @ts-expect-error: an error says whether to retry
export const errorWithoutRetryable: ReplyStreamEvent = { id: "1", event: "error", data: { error: "e", detail: "d", message_id: null } };

/** What a client keeps of a reply while its UI message chunks come. */
export interface UiReply {
  messageId: string | null;
  open: string[];
  text: string;
  thinking: string;
  finish: string | null;
  error: string | null;
}

export function onChunk(reply: UiReply, chunk: UIMessageChunk): UiReply {
  switch (chunk.type) {
    case "start": {
      const messageId: string | undefined = chunk.messageId;
      return { ...reply, messageId: messageId ?? null };
    }
    case "start-step":
    case "finish-step":
      return reply;
    case "text-start":
    case "reasoning-start":
      return { ...reply, open: [...reply.open, chunk.id] };
    case "text-delta":
      return { ...reply, text: reply.text + chunk.delta };
    case "reasoning-delta":
      return { ...reply, thinking: reply.thinking + chunk.delta };
    case "text-end":
    case "reasoning-end":
      return { ...reply, open: reply.open.filter((id) => id !== chunk.id) };
    case "finish":
      return { ...reply, finish: "finish" };
    case "abort":
      return { ...reply, finish: "abort" };
    case "error": {
      const errorText: string = chunk.errorText;
      return { ...reply, error: errorText };
    }
    default: {
      const unreachable: never = chunk;
      return unreachable;
    }
  }
}

// Every chunk Zyron sends is one the AI SDK's own type accepts.
export function asSdkChunk(chunk: UIMessageChunk): SdkUIMessageChunk {
  return chunk;
}

export const plainReply = [
  {
    type: "start",
    messageId: "c27b5e1a-3f2d-4e6c-8a9b-0c1d2e3f4a50",
    messageMetadata: {
      sessionId: "4f0c8a3e-6d4b-4c1a-9b7e-1d2c3b4a5f60",
      userMessageId: "9a1e2b3c-4d5e-4f60-8a9b-0c1d2e3f4a50",
      assistantMessageId: "c27b5e1a-3f2d-4e6c-8a9b-0c1d2e3f4a50",
      saved: true,
    },
  },
  { type: "start-step" },
  { type: "reasoning-start", id: "reasoning-1" },
  { type: "reasoning-delta", id: "reasoning-1", delta: "Hm." },
  { type: "reasoning-end", id: "reasoning-1" },
  { type: "text-start", id: "text-2" },
  { type: "text-delta", id: "text-2", delta: "Hello" },
  { type: "text-end", id: "text-2" },
  { type: "finish-step" },
  {
    type: "finish",
    messageMetadata: {
      finishReason: "stop",
      stopReason: "end_turn",
      model: "claude-sonnet-5",
      usage: USAGE,
    },
  },
] satisfies UIMessageChunk[];
export const aborted = { type: "abort" } satisfies UIMessageChunk;
export const failed = { type: "error", errorText: "The model failed." } satisfies UIMessageChunk;
// @ts-expect-error: a text-delta names its part
export const deltaWithoutId: UIMessageChunk = { type: "text-delta", delta: "Hi" };
// @ts-expect-error: not a chunk Zyron sends
export const toolChunk: UIMessageChunk = { type: "tool-input-start", toolCallId: "t", toolName: "x" };
// @ts-expect-error: an error chunk's text is errorText
export const errorWithDetail: UIMessageChunk = { type: "error", detail: "x" };
