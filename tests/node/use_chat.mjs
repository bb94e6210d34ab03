// useChat without React: the AI SDK's own AbstractChat (what useChat wraps) against Zyron, so
// the requests are built by the library, not by the test. Reads {package, api, headers?,
// chatId, messages?, steps: [{send: text} | {edit: index, text} | {regenerate: true} |
// {resume: true}]} on stdin; writes {steps: [{status, error, messages}]} on stdout.
const request = JSON.parse(await new Promise((resolve) => {
  let input = "";
  process.stdin.on("data", (part) => { input += part; });
  process.stdin.on("end", () => resolve(input));
}));
const { AbstractChat, DefaultChatTransport } = await import(request.package);

class MemoryState {
  constructor(messages) { this.messages = messages; this.status = "ready"; this.error = undefined; }
  pushMessage(message) { this.messages = this.messages.concat(message); }
  popMessage() { this.messages = this.messages.slice(0, -1); }
  replaceMessage(index, message) {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  }
  snapshot(thing) { return structuredClone(thing); }
}

class Chat extends AbstractChat {
  constructor(init) { super({ ...init, state: new MemoryState(init.messages ?? []) }); }
}

// Says "response" on stderr when the server first answers, so a test can act mid-reply.
let answered = false;
async function told(url, init) {
  const response = await fetch(url, init);
  if (!answered) process.stderr.write("response\n");
  answered = true;
  return response;
}

let counter = 0;
const chat = new Chat({
  id: request.chatId,
  messages: request.messages ?? [],
  generateId: () => `m${++counter}`,
  transport: new DefaultChatTransport({ api: request.api, headers: request.headers ?? {}, fetch: told }),
  onError: () => {},
});
const steps = [];
for (const step of request.steps) {
  if (step.send !== undefined) await chat.sendMessage({ text: step.send });
  else if (step.edit !== undefined) {
    await chat.sendMessage({ text: step.text, messageId: chat.messages[step.edit].id });
  } else if (step.regenerate) await chat.regenerate();
  else if (step.resume) await chat.resumeStream();
  steps.push({
    status: chat.status,
    error: chat.error ? String(chat.error.message ?? chat.error) : null,
    messages: chat.messages,
  });
}
process.stdout.write(JSON.stringify({ steps }) + "\n");
