"""Every default llmframe uses, in one place."""

# Executor
MAX_CONCURRENCY = 64  # requests in flight per call
CHUNK_SIZE = 1024  # rows looked up in the cache per transaction
QUEUE_SLACK = 2  # queue holds this many requests per worker, so workers never wait on the feeder
CANCEL_GRACE_SECONDS = 2.0  # an interrupt waits at most this long for in-flight work to wind down

# Cache
CACHE_ENV_VAR = "LLMFRAME_CACHE_DIR"
CACHE_APP_NAME = "llmframe"
CACHE_SIZE_LIMIT = 16 * 2**30  # answers cost money: evict only far beyond any normal working set
CACHE_FLUSH_ROWS = 256  # answers are written in batches of this many ...
CACHE_FLUSH_SECONDS = 0.2  # ... or at least this often, so a crash loses almost nothing
CACHE_KEY_VERSION = 1  # bump when the key's canonical form changes

# HTTP
REQUEST_TIMEOUT_SECONDS = 600.0  # one request, end to end (OpenAI's own default)
CONNECT_TIMEOUT_SECONDS = 10.0
SDK_MAX_RETRIES = 2  # the SDK's own retries, until llmframe's retry policy replaces them

# Output
DEFAULT_OUTPUT = "response"
ERROR_SUFFIX = "_error"
REPORT_ATTR = "llmframe"
ERROR_SAMPLES = 5  # distinct error messages kept in the run report

# Progress
PROGRESS_REFRESH_SECONDS = 0.25  # bar redraws at most this often: no flood in notebooks or logs
