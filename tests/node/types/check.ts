// Zyron's API as a TypeScript client sees it: the types openapi-typescript generates from the
// OpenAPI document, used the way a client would use them. tests/api/test_typescript_types.py
// generates them as the module "zyron-openapi" in a temporary directory and compiles this file
// with `tsc --strict`: a request or response that is missing, untyped or typed wrongly fails
// the compile, and so does a wrong shape that the types accept (each `@ts-expect-error` below
// must be an error). The stream events are in streams.ts.
import type { UIMessage as SdkUIMessage } from "ai";
import type { components, paths } from "zyron-openapi";

type Schemas = components["schemas"];

/** true for a real type; false for never, unknown and any (an untyped part of the document). */
type IsKnown<T> = [T] extends [never] ? false : unknown extends T ? false : true;
type Assert<T extends true> = T;
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

// Every operation of the document, and only those: a new one fails here until it is covered
// below (the methods each path has, read from the generated `paths`).
type Methods<Item> = {
  [M in Exclude<keyof Item, "parameters">]-?: NonNullable<Item[M]> extends never ? never : M;
}[Exclude<keyof Item, "parameters">];
type Operations = { [P in keyof paths]: Methods<paths[P]> };
type Covered = {
  "/health": "get";
  "/auth/signup": "post";
  "/auth/login": "post";
  "/auth/refresh": "post";
  "/auth/logout": "post";
  "/auth/me": "get" | "delete";
  "/sessions": "get" | "post";
  "/sessions/{session_id}": "get" | "patch" | "delete";
  "/sessions/{session_id}/messages": "get";
  "/sessions/{session_id}/stream": "get";
  "/chat": "post";
  "/chat/{message_id}/regenerate": "post";
  "/chat/{message_id}/stream": "get";
  "/chat/{message_id}/cancel": "post";
  "/models": "get";
  "/usage": "get";
  "/files": "get" | "post";
  "/files/{file_id}": "get" | "delete";
  "/search": "get";
  "/export": "get";
  "/sessions/{session_id}/export": "get";
  "/import": "post";
  "/sessions/{session_id}/shares": "get" | "post";
  "/shares": "get";
  "/shares/{share_id}": "delete";
  "/shared/{token}": "get";
  "/shared/{token}/files/{file_id}": "get";
  "/ui/chat": "post";
  "/ui/chat/{chat_id}/messages": "get";
  "/ui/chat/{chat_id}/stream": "get";
  "/admin/users": "get";
  "/admin/users/{user_id}": "get" | "patch";
  "/admin/users/{user_id}/limits": "get" | "patch" | "delete";
  "/admin/usage": "get";
};
export type EveryOperationIsCovered = Assert<Equal<Operations, Covered>>;

// Each operation's request and success response, by name. Indexing fails to compile where
// the document lacks one.
export type HealthOk = paths["/health"]["get"]["responses"][200]["content"]["application/json"];
export type HealthDegraded =
  paths["/health"]["get"]["responses"][503]["content"]["application/json"];

export type SignupBody =
  paths["/auth/signup"]["post"]["requestBody"]["content"]["application/json"];
export type SignupCreated =
  paths["/auth/signup"]["post"]["responses"][201]["content"]["application/json"];
export type LoginBody = paths["/auth/login"]["post"]["requestBody"]["content"]["application/json"];
export type LoginOk = paths["/auth/login"]["post"]["responses"][200]["content"]["application/json"];
export type RefreshBody =
  paths["/auth/refresh"]["post"]["requestBody"]["content"]["application/json"];
export type RefreshOk =
  paths["/auth/refresh"]["post"]["responses"][200]["content"]["application/json"];
export type LogoutNoContent = paths["/auth/logout"]["post"]["responses"][204];
export type MeOk = paths["/auth/me"]["get"]["responses"][200]["content"]["application/json"];
export type DeleteMeBody = NonNullable<
  NonNullable<paths["/auth/me"]["delete"]["requestBody"]>["content"]["application/json"]
>;
export type MeDeleted = paths["/auth/me"]["delete"]["responses"][204];

export type SessionsQuery = NonNullable<paths["/sessions"]["get"]["parameters"]["query"]>;
export type SessionsOk = paths["/sessions"]["get"]["responses"][200]["content"]["application/json"];
export type SessionCreateBody =
  paths["/sessions"]["post"]["requestBody"]["content"]["application/json"];
export type SessionCreated =
  paths["/sessions"]["post"]["responses"][201]["content"]["application/json"];
export type SessionPath = paths["/sessions/{session_id}"]["get"]["parameters"]["path"];
export type SessionOk =
  paths["/sessions/{session_id}"]["get"]["responses"][200]["content"]["application/json"];
export type SessionUpdateBody =
  paths["/sessions/{session_id}"]["patch"]["requestBody"]["content"]["application/json"];
export type SessionUpdated =
  paths["/sessions/{session_id}"]["patch"]["responses"][200]["content"]["application/json"];
export type SessionDeleted = paths["/sessions/{session_id}"]["delete"]["responses"][204];
export type MessagesQuery = NonNullable<
  paths["/sessions/{session_id}/messages"]["get"]["parameters"]["query"]
>;
export type MessagesOk =
  paths["/sessions/{session_id}/messages"]["get"]["responses"][200]["content"]["application/json"];
export type SessionResumeHeaders = NonNullable<
  paths["/sessions/{session_id}/stream"]["get"]["parameters"]["header"]
>;
export type SessionResumeStream =
  paths["/sessions/{session_id}/stream"]["get"]["responses"][200]["content"]["text/event-stream"];

export type ChatBody = paths["/chat"]["post"]["requestBody"]["content"]["application/json"];
export type ChatHeaders = NonNullable<paths["/chat"]["post"]["parameters"]["header"]>;
export type ChatJson = paths["/chat"]["post"]["responses"][200]["content"]["application/json"];
export type ChatStream = paths["/chat"]["post"]["responses"][200]["content"]["text/event-stream"];
export type RegenerateBody = NonNullable<
  NonNullable<
    paths["/chat/{message_id}/regenerate"]["post"]["requestBody"]
  >["content"]["application/json"]
>;
export type RegenerateJson =
  paths["/chat/{message_id}/regenerate"]["post"]["responses"][200]["content"]["application/json"];
export type RegenerateStream =
  paths["/chat/{message_id}/regenerate"]["post"]["responses"][200]["content"]["text/event-stream"];
export type ResumeHeaders = NonNullable<
  paths["/chat/{message_id}/stream"]["get"]["parameters"]["header"]
>;
export type ResumeStream =
  paths["/chat/{message_id}/stream"]["get"]["responses"][200]["content"]["text/event-stream"];
export type CancelAccepted =
  paths["/chat/{message_id}/cancel"]["post"]["responses"][202]["content"]["application/json"];

export type ModelsOk = paths["/models"]["get"]["responses"][200]["content"]["application/json"];
// Administration (docs/admin.md): to anyone but an admin, each of these is a 404.
export type AdminUsersQuery = NonNullable<paths["/admin/users"]["get"]["parameters"]["query"]>;
export type AdminUsersOk =
  paths["/admin/users"]["get"]["responses"][200]["content"]["application/json"];
export type AdminUserOk =
  paths["/admin/users/{user_id}"]["get"]["responses"][200]["content"]["application/json"];
export type AdminUserUpdate =
  paths["/admin/users/{user_id}"]["patch"]["requestBody"]["content"]["application/json"];
export type AdminUserLockout =
  paths["/admin/users/{user_id}"]["patch"]["responses"][409]["content"]["application/json"];
export type AdminLimitsOk =
  paths["/admin/users/{user_id}/limits"]["get"]["responses"][200]["content"]["application/json"];
export type AdminLimitsUpdate =
  paths["/admin/users/{user_id}/limits"]["patch"]["requestBody"]["content"]["application/json"];
export type AdminLimitsCleared =
  paths["/admin/users/{user_id}/limits"]["delete"]["responses"][200]["content"]["application/json"];
export type AdminUsageQuery = NonNullable<paths["/admin/usage"]["get"]["parameters"]["query"]>;
export type AdminUsageOk =
  paths["/admin/usage"]["get"]["responses"][200]["content"]["application/json"];
export type AdminNotFound =
  paths["/admin/usage"]["get"]["responses"][404]["content"]["application/json"];
export type UsageQuery = NonNullable<paths["/usage"]["get"]["parameters"]["query"]>;
export type UsageOk = paths["/usage"]["get"]["responses"][200]["content"]["application/json"];

export type FileUploadBody = NonNullable<
  paths["/files"]["post"]["requestBody"]
>["content"]["multipart/form-data"];
export type FileCreated = paths["/files"]["post"]["responses"][201]["content"]["application/json"];
export type FilesQuery = NonNullable<paths["/files"]["get"]["parameters"]["query"]>;
export type FilesOk = paths["/files"]["get"]["responses"][200]["content"]["application/json"];
export type FilePath = paths["/files/{file_id}"]["get"]["parameters"]["path"];
export type FileBytes =
  paths["/files/{file_id}"]["get"]["responses"][200]["content"]["image/png"];
export type FileDeleted = paths["/files/{file_id}"]["delete"]["responses"][204];

export type AccountExport = paths["/export"]["get"]["responses"][200]["content"]["application/zip"];
export type SessionExportQuery = NonNullable<
  paths["/sessions/{session_id}/export"]["get"]["parameters"]["query"]
>;
export type SessionExport =
  paths["/sessions/{session_id}/export"]["get"]["responses"][200]["content"]["application/json"];
export type SessionMarkdown =
  paths["/sessions/{session_id}/export"]["get"]["responses"][200]["content"]["text/markdown"];
export type ImportBody = paths["/import"]["post"]["requestBody"]["content"]["multipart/form-data"];
export type ImportOk = paths["/import"]["post"]["responses"][200]["content"]["application/json"];
export const asMarkdown = { format: "markdown" } satisfies SessionExportQuery;
// @ts-expect-error: a session exports as json or markdown
export const asPdf: SessionExportQuery = { format: "pdf" };
export function exportedMessages(document: SessionExport): number {
  const branches = document.sessions.flatMap((session) => session.messages);
  return document.version === 1 ? branches.length : 0;
}
export function importedSomething(summary: ImportOk): boolean {
  return summary.sessions_created + summary.files_created > 0 || summary.sessions_skipped > 0;
}

export type ShareBody = NonNullable<
  NonNullable<paths["/sessions/{session_id}/shares"]["post"]["requestBody"]>["content"]["application/json"]
>;
export type ShareCreatedOk =
  paths["/sessions/{session_id}/shares"]["post"]["responses"][201]["content"]["application/json"];
export type SessionSharesOk =
  paths["/sessions/{session_id}/shares"]["get"]["responses"][200]["content"]["application/json"];
export type SharesQuery = NonNullable<paths["/shares"]["get"]["parameters"]["query"]>;
export type SharesOk = paths["/shares"]["get"]["responses"][200]["content"]["application/json"];
export type ShareRevoked = paths["/shares/{share_id}"]["delete"]["responses"][204];
export type SharedOk =
  paths["/shared/{token}"]["get"]["responses"][200]["content"]["application/json"];
export type SharedFileBytes =
  paths["/shared/{token}/files/{file_id}"]["get"]["responses"][200]["content"]["image/png"];

export type SearchQuery = paths["/search"]["get"]["parameters"]["query"];
export type SearchOk = paths["/search"]["get"]["responses"][200]["content"]["application/json"];
export const searchWords = { q: '"row level" security -mysql', limit: 20 } satisfies SearchQuery;
// @ts-expect-error: q is required
export const searchNothing: SearchQuery = { limit: 20 };
export const searchPage: SearchOk = {
  results: [
    {
      kind: "message",
      session_id: "4f0c8a3e-6d4b-4c1a-9b7e-1d2c3b4a5f60",
      session_title: "Postgres",
      message_id: "c27b5e1a-3f2d-4e6c-8a9b-0c1d2e3f4a50",
      role: "user",
      created_at: "2026-01-01T00:00:00Z",
      snippet: [
        { text: "row level", match: true },
        { text: " security", match: false },
      ],
    },
    {
      kind: "title",
      session_id: "4f0c8a3e-6d4b-4c1a-9b7e-1d2c3b4a5f60",
      session_title: "Row level security",
      message_id: null,
      role: null,
      created_at: "2026-01-01T00:00:00Z",
      snippet: [{ text: "Row level", match: true }],
    },
  ],
  next_before: null,
};
// @ts-expect-error: a hit's kind is message or title
export const searchWrongKind: SearchOk["results"][number]["kind"] = "file";

export type UiChatBody = paths["/ui/chat"]["post"]["requestBody"]["content"]["application/json"];
export type UiChatStream =
  paths["/ui/chat"]["post"]["responses"][200]["content"]["text/event-stream"];
export type UiMessagesOk =
  paths["/ui/chat/{chat_id}/messages"]["get"]["responses"][200]["content"]["application/json"];
export type UiResumeStream =
  paths["/ui/chat/{chat_id}/stream"]["get"]["responses"][200]["content"]["text/event-stream"];
export type UiResumeNothing = paths["/ui/chat/{chat_id}/stream"]["get"]["responses"][204];

// None of them is unknown or any.
export type AllTyped = [
  Assert<IsKnown<HealthOk>>,
  Assert<IsKnown<HealthDegraded>>,
  Assert<IsKnown<SignupBody>>,
  Assert<IsKnown<SignupCreated>>,
  Assert<IsKnown<LoginBody>>,
  Assert<IsKnown<LoginOk>>,
  Assert<IsKnown<RefreshBody>>,
  Assert<IsKnown<RefreshOk>>,
  Assert<IsKnown<MeOk>>,
  Assert<IsKnown<DeleteMeBody>>,
  Assert<IsKnown<SessionsQuery>>,
  Assert<IsKnown<SessionsOk>>,
  Assert<IsKnown<SessionCreateBody>>,
  Assert<IsKnown<SessionCreated>>,
  Assert<IsKnown<SessionPath>>,
  Assert<IsKnown<SessionOk>>,
  Assert<IsKnown<SessionUpdateBody>>,
  Assert<IsKnown<SessionUpdated>>,
  Assert<IsKnown<MessagesQuery>>,
  Assert<IsKnown<MessagesOk>>,
  Assert<IsKnown<SessionResumeHeaders>>,
  Assert<IsKnown<SessionResumeStream>>,
  Assert<IsKnown<ChatBody>>,
  Assert<IsKnown<ChatHeaders>>,
  Assert<IsKnown<ChatJson>>,
  Assert<IsKnown<ChatStream>>,
  Assert<IsKnown<RegenerateBody>>,
  Assert<IsKnown<RegenerateJson>>,
  Assert<IsKnown<RegenerateStream>>,
  Assert<IsKnown<ResumeHeaders>>,
  Assert<IsKnown<ResumeStream>>,
  Assert<IsKnown<CancelAccepted>>,
  Assert<IsKnown<ModelsOk>>,
  Assert<IsKnown<AdminUsersQuery>>,
  Assert<IsKnown<AdminUsageQuery>>,
  Assert<IsKnown<AdminUserUpdate>>,
  Assert<IsKnown<AdminLimitsUpdate>>,
  Assert<Equal<AdminUsersOk, Schemas["AdminUserRead"][]>>,
  Assert<Equal<AdminUserOk, Schemas["AdminUserRead"]>>,
  Assert<Equal<AdminLimitsOk, Schemas["LimitsRead"]>>,
  Assert<Equal<AdminLimitsCleared, Schemas["LimitsRead"]>>,
  Assert<Equal<AdminUsageOk, Schemas["AdminUsageReport"]>>,
  Assert<Equal<AdminUserLockout, Schemas["ErrorBody"]>>,
  Assert<Equal<AdminNotFound, Schemas["ErrorBody"]>>,
  Assert<IsKnown<UsageQuery>>,
  Assert<IsKnown<UsageOk>>,
  Assert<IsKnown<FileUploadBody>>,
  Assert<IsKnown<FileCreated>>,
  Assert<IsKnown<FilesQuery>>,
  Assert<IsKnown<FilesOk>>,
  Assert<IsKnown<FilePath>>,
  Assert<IsKnown<ShareBody>>,
  Assert<IsKnown<ShareCreatedOk>>,
  Assert<IsKnown<SessionSharesOk>>,
  Assert<IsKnown<SharesQuery>>,
  Assert<IsKnown<SharesOk>>,
  Assert<IsKnown<SharedOk>>,
  Assert<IsKnown<SharedFileBytes>>,
  Assert<IsKnown<SearchOk>>,
  Assert<IsKnown<UiChatBody>>,
  Assert<IsKnown<UiChatStream>>,
  Assert<IsKnown<UiResumeStream>>,
  Assert<IsKnown<UiMessagesOk>>,
  Assert<Equal<HealthOk, Schemas["Health"]>>,
  Assert<Equal<UiMessagesOk, Schemas["UIMessage"][]>>,
  // Named components, as a client imports them.
  Assert<Equal<SignupCreated, Schemas["TokenPair"]>>,
  Assert<Equal<MessagesOk, Schemas["MessageRead"][]>>,
  Assert<Equal<ChatJson, Schemas["ChatResponse"]>>,
  Assert<Equal<ModelsOk, Schemas["ModelList"]>>,
  Assert<Equal<UsageOk, Schemas["UsageReport"]>>,
  Assert<Equal<FilesOk, Schemas["FileRead"][]>>,
  Assert<Equal<ShareCreatedOk, Schemas["ShareCreated"]>>,
  Assert<Equal<SharesOk, Schemas["ShareRead"][]>>,
  Assert<Equal<SessionSharesOk, Schemas["ShareRead"][]>>,
  Assert<Equal<SharedOk, Schemas["SharedConversation"]>>,
  Assert<Equal<UiChatBody, Schemas["UIChatRequest"]>>,
];

const CREATED = "2026-01-01T00:00:00Z";
const USER_ID = "0b7b6c1e-8f3e-4c33-9d55-2f0d5c2a1b00";
const SESSION_ID = "4f0c8a3e-6d4b-4c1a-9b7e-1d2c3b4a5f60";
const MESSAGE_ID = "c27b5e1a-3f2d-4e6c-8a9b-0c1d2e3f4a50";

// Accounts.
export const signup = {
  email: "ada@example.com",
  password: "correct horse battery",
} satisfies SignupBody;
export const login: LoginBody = signup;
// @ts-expect-error: the password is required
export const signupWithoutPassword: SignupBody = { email: "ada@example.com" };
// @ts-expect-error: an email is a string
export const signupNumericEmail: SignupBody = { email: 42, password: "correct horse battery" };
export const tokens: SignupCreated = {
  access_token: "eyJ…",
  refresh_token: "r-1",
  token_type: "bearer",
  expires_in: 900,
  user: { id: USER_ID, email: "ada@example.com", display_name: null, created_at: CREATED },
};
// @ts-expect-error: the token type is "bearer"
export const macToken: SignupCreated = { ...tokens, token_type: "mac" };
// @ts-expect-error: the user is required
export const tokensWithoutUser: LoginOk = { access_token: "a", refresh_token: "r", expires_in: 1 };
export const refresh = { refresh_token: tokens.refresh_token } satisfies RefreshBody;
export function authorization(pair: LoginOk | RefreshOk): { Authorization: string } {
  return { Authorization: `Bearer ${pair.access_token}` };
}
export function whoIs(me: MeOk): string {
  return me.display_name ?? me.email ?? me.id;
}
// The 204s have no body.
export const nothing: LogoutNoContent["content"] = undefined;
export const deleted: MeDeleted["content"] = undefined;
// Deleting a built-in account confirms with its password (a Supabase user sends no body).
export const confirmDeletion = { password: signup.password } satisfies DeleteMeBody;
// @ts-expect-error: the confirmation is the password, not an email
export const deletionByEmail: DeleteMeBody = { email: "ada@example.com" };

// Sessions.
export const firstPage = { limit: 50 } satisfies SessionsQuery;
// @ts-expect-error: limit is a number
export const textLimit: SessionsQuery = { limit: "50" };
export const session: SessionCreated = {
  id: SESSION_ID,
  title: "New chat",
  model: null,
  system_prompt: null,
  created_at: CREATED,
  updated_at: CREATED,
};
export const sessions: SessionsOk = [session];
export const titles: string[] = sessions.map((s) => s.title);
export const create = { title: "First chat", system_prompt: "Be brief." } satisfies SessionCreateBody;
export const emptyCreate = {} satisfies SessionCreateBody;
export const rename = { title: "Renamed" } satisfies SessionUpdateBody;
export const clearSystemPrompt = { system_prompt: null } satisfies SessionUpdateBody;
// @ts-expect-error: a title is a string
export const numericTitle: SessionUpdateBody = { title: 7 };
export const sessionPath = { session_id: SESSION_ID } satisfies SessionPath;
export const sameSession: SessionOk = session;
export const renamed: SessionUpdated = { ...session, title: "Renamed" };

// Messages, made of parts.
export const olderPage = { limit: 100, before: MESSAGE_ID, tree: false } satisfies MessagesQuery;
export const messages: MessagesOk = [
  {
    id: MESSAGE_ID,
    session_id: SESSION_ID,
    parent_id: null,
    role: "assistant",
    content: "Hello!",
    parts: [
      { type: "reasoning", text: "", redacted: true },
      { type: "text", text: "Hello!" },
      {
        type: "file",
        file_id: USER_ID,
        media_type: "image/png",
        filename: "a.png",
        size: 68,
        missing: true,
      },
    ],
    status: "complete",
    model: "claude-sonnet-5",
    stop_reason: "end_turn",
    usage: {
      input_tokens: 12,
      output_tokens: 9,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      reasoning_tokens: null,
    },
    cost_usd: 0.000114,
    created_at: CREATED,
  },
];
type Part = MessagesOk[number]["parts"][number];
export function render(part: Part): string {
  switch (part.type) {
    case "text":
      return part.text;
    case "reasoning":
      return part.redacted ? "(thinking withheld)" : part.text;
    case "file":
      return `${part.filename} (${part.media_type}, ${part.size} bytes)${part.missing ? ", deleted" : ""}`;
    default: {
      const unreachable: never = part;
      return unreachable;
    }
  }
}
export const transcript: string[] = messages.map((m) => m.parts.map(render).join("\n"));
// @ts-expect-error: no such part type
export const imagePart: Part = { type: "image", url: "https://example.com/a.png" };
// @ts-expect-error: a file part names its file
export const fileWithoutId: Part = { type: "file", media_type: "image/png", filename: "a", size: 1 };
// @ts-expect-error: parts are required
export const messageWithoutParts: MessagesOk[number] = { ...messages[0], parts: undefined };

// POST /chat: the README's curl bodies. Fields with defaults (stream) may be left out.
export const hello = { message: "Hello, Claude!", title: "First chat" } satisfies ChatBody;
export const more = { message: "Tell me more.", session_id: SESSION_ID } satisfies ChatBody;
export const once = { message: "Summarise.", session_id: SESSION_ID, stream: false } satisfies ChatBody;
export const edit = { message: "Instead…", session_id: SESSION_ID, parent_id: null } satisfies ChatBody;
export const guest = {
  message: "And then?",
  history: [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello! How can I help?" },
  ],
  reasoning: { effort: "high" },
  attachments: [{ media_type: "text/plain", data: "aGk=", filename: "hi.txt" }],
  max_tokens: 1024,
} satisfies ChatBody;
export const thinkWithBudget = { message: "Why?", reasoning: { budget_tokens: 2048 } } satisfies ChatBody;
export const retrySafely = { "Idempotency-Key": "chat-1" } satisfies ChatHeaders;
// @ts-expect-error: a history turn's role is user or assistant
export const systemTurn: ChatBody = { message: "x", history: [{ role: "system", content: "y" }] };
// @ts-expect-error: the message is required
export const noMessage: ChatBody = { session_id: SESSION_ID };
// @ts-expect-error: an effort is low, medium, high, xhigh or max
export const extremeEffort: ChatBody = { message: "x", reasoning: { effort: "extreme" } };
// @ts-expect-error: stream is a boolean
export const streamYes: ChatBody = { message: "x", stream: "yes" };
export function replyOf(answer: ChatJson | RegenerateJson): string {
  const spent = answer.usage.input_tokens + answer.usage.output_tokens;
  return `${answer.message.content} (${spent} tokens, saved: ${answer.saved})`;
}
export const again = { stream: false, max_tokens: 512, reasoning: { effort: "low" } } satisfies RegenerateBody;
export const resumeAfter = { "Last-Event-ID": "42" } satisfies ResumeHeaders & SessionResumeHeaders;
export const cancelled: CancelAccepted = { message_id: MESSAGE_ID, status: "cancelling" };

// Models and usage.
export function reasoningModels(list: ModelsOk): string[] {
  return list.models.filter((m) => m.reasoning && m.reasoning_modes.includes("effort")).map((m) => m.id);
}
export const localKind: ModelsOk["models"][number]["kind"] = "local";
// @ts-expect-error: a model's kind is anthropic, openai or local
export const googleKind: ModelsOk["models"][number]["kind"] = "google";
export const month = { days: 30 } satisfies UsageQuery;
export function spent(report: UsageOk): { usd: number; left: number | null } {
  const usd = report.days.reduce((sum, day) => sum + (day.cost_usd ?? 0), 0);
  return { usd, left: report.quota.remaining_today };
}

// Files: upload, list, attach, download, delete.
export const upload = { file: "(the bytes)" } satisfies FileUploadBody;
export const uploaded: FileCreated = {
  id: USER_ID,
  filename: "notes.md",
  media_type: "text/markdown",
  size: 120,
  created_at: CREATED,
};
export const filesPage = { limit: 50, before: uploaded.id } satisfies FilesQuery;
export const files: FilesOk = [uploaded];
export const withFile = { message: "Summarise it.", attachments: files.map((f) => f.id) } satisfies ChatBody;
export const filePath = { file_id: uploaded.id } satisfies FilePath;
// @ts-expect-error: a file's size is a number
export const textSize: FileCreated = { ...uploaded, size: "120" };

// Share links: make one up to a message, list, read without an account, revoke.
export const shareUpTo = { up_to_message_id: USER_ID } satisfies ShareBody;
export const shareAll = {} satisfies ShareBody;
export function linkOf(created: ShareCreatedOk): { url: string; token: string } {
  return { url: created.url, token: created.token };
}
export const sharesPage = { limit: 20, before: USER_ID } satisfies SharesQuery;
export function orphaned(shares: SharesOk): string[] {
  // A share outlives its session: session_id is null then.
  return shares.filter((share) => share.session_id === null).map((share) => share.id);
}
export function sharedText(shared: SharedOk): string[] {
  return shared.messages.flatMap((message) =>
    message.parts.flatMap((part) => (part.type === "text" ? [part.text] : [])),
  );
}
export function sharedFileUrls(shared: SharedOk): string[] {
  return shared.files.map((file) => file.url);
}
export const revoked: ShareRevoked["content"] = undefined;
// @ts-expect-error: a shared message has no usage
export const sharedUsage = (shared: SharedOk) => shared.messages[0].usage;
// @ts-expect-error: the token is not listed, only shown once at creation
export const listedToken = (shares: SharesOk) => shares[0].token;

// POST /ui/chat: useChat's body, and the options Zyron takes beside it.
export const uiSubmit = {
  id: "chat-1",
  messages: [{ id: "u1", role: "user", parts: [{ type: "text", text: "Hello!" }] }],
  trigger: "submit-message",
} satisfies UiChatBody;
export const uiRegenerate = {
  id: "chat-1",
  messages: uiSubmit.messages,
  trigger: "regenerate-message",
  messageId: "a1",
  reasoning: { effort: "low" },
  max_tokens: 1024,
} satisfies UiChatBody;
export const uiFile = {
  id: "chat-2",
  messages: [
    {
      id: "u1",
      role: "user",
      parts: [{ type: "file", url: "data:text/plain;base64,aGk=", mediaType: "text/plain" }],
    },
  ],
} satisfies UiChatBody;
// What useChat holds goes as it is.
export function fromUseChat(id: string, held: SdkUIMessage[]): UiChatBody {
  return { id, messages: held.map((message) => ({ ...message })), trigger: "submit-message" };
}
// @ts-expect-error: a UIMessage's role is system, user or assistant
export const toolRole: UiChatBody = { id: "c", messages: [{ id: "m", role: "tool", parts: [] }] };
// @ts-expect-error: the trigger is submit-message or regenerate-message
export const resumeTrigger: UiChatBody = { id: "c", messages: [], trigger: "resume" };
// @ts-expect-error: the messages are required
export const noMessages: UiChatBody = { id: "c" };
// @ts-expect-error: a part's type is required
export const untypedPart: UiChatBody = { id: "c", messages: [{ id: "m", role: "user", parts: [{ text: "x" }] }] };

// Administration: find the costliest user of a month, disable them, lift a quota for another.
export const costliest = { start: "2026-11-01", end: "2026-11-30", top: 5 } satisfies AdminUsageQuery;
export const costliestUser = (report: AdminUsageOk): string | undefined =>
  report.top_users[0]?.user_id;
export const disable = { disabled: true } satisfies AdminUserUpdate;
export const promote = { role: "admin" } satisfies AdminUserUpdate;
export const moreTokens = { daily_tokens: 5_000_000, daily_usd: null } satisfies AdminLimitsUpdate;
export const findUser = { q: "ada@", role: "user", disabled: false, limit: 20 } satisfies AdminUsersQuery;
export const isDisabled = (user: AdminUserOk): boolean => user.disabled && user.disabled_at !== null;
export const heldTo = (limits: AdminLimitsOk): number | null => limits.effective.daily_tokens;
// @ts-expect-error: a role is user or admin
export const owner: AdminUserUpdate = { role: "owner" };
// @ts-expect-error: disabled is a boolean
export const disabledText: AdminUserUpdate = { disabled: "yes" };
// @ts-expect-error: an override is a number (or null), not text
export const textQuota: AdminLimitsUpdate = { daily_tokens: "5" };
