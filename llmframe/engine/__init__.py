"""The engine: one event loop, the worker pool, retries, rate limits, the cache writer, progress."""
