"""Stream events and the hubs that carry them to followers (in process, or Redis Streams)."""
