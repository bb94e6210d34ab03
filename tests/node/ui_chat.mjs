// Drives Zyron's UI message stream with the real AI SDK client, as useChat does.
// Reads one JSON request on stdin: {package: "ai" | "ai5", api, headers?, chatId, trigger?,
// messageId?, messages?, body?, resume?: bool}. Writes one JSON line on stdout: the chunks as the
// client parsed (and validated) them, the message readUIMessageStream assembled, and the error,
// if any, that the client raised.
const request = JSON.parse(await new Promise((resolve) => {
  let input = "";
  process.stdin.on("data", (part) => { input += part; });
  process.stdin.on("end", () => resolve(input));
}));
const { DefaultChatTransport, readUIMessageStream, validateUIMessages } = await import(request.package);
if (request.validate) {
  // {package, validate: UIMessage[]}: what useChat would take as its initial messages.
  try {
    await validateUIMessages({ messages: request.validate });
    process.stdout.write(JSON.stringify({ valid: true }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ valid: false, error: String(error?.message ?? error) }) + "\n");
  }
  process.exit(0);
}
const transport = new DefaultChatTransport({ api: request.api, headers: request.headers ?? {} });
const result = { chunks: [], message: null, error: null, status: "streamed" };
try {
  const stream = request.resume
    ? await transport.reconnectToStream({ chatId: request.chatId })
    : await transport.sendMessages({
      chatId: request.chatId,
      trigger: request.trigger ?? "submit-message",
      messageId: request.messageId,
      messages: request.messages ?? [],
      abortSignal: undefined,
      body: request.body,
    });
  if (stream === null) {
    result.status = "nothing-to-resume";
  } else {
    const [recorded, assembled] = stream.tee();
    const recording = (async () => {
      for await (const chunk of recorded) {
        // The first chunk is announced on stderr, so a test can act once a stream is under way.
        if (result.chunks.length === 0) process.stderr.write("first-chunk\n");
        result.chunks.push(chunk);
      }
    })();
    for await (const message of readUIMessageStream({ stream: assembled, terminateOnError: true })) {
      result.message = message;
    }
    await recording.catch(() => {});
  }
} catch (error) {
  result.error = String(error?.message ?? error);
}
process.stdout.write(JSON.stringify(result) + "\n");
