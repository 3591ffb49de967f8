"""The engine: takes a plan and returns an outcome. One event loop, the worker pool, retries, rate limits,
the cache writer, progress."""
