"""The AI SDK's UI message stream protocol (v1), for front ends built on useChat."""
