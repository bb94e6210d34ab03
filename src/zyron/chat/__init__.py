"""POST /chat: the reply, produced by a task of its own and streamed over SSE."""
