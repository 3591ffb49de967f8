"""Every default llmframe uses, in one place."""

# Executor
MAX_CONCURRENCY = 64  # requests in flight per call
CHUNK_SIZE = 1024  # rows looked up in the cache per transaction
RENDER_CHUNK_ROWS = 16_384  # rows rendered and hashed at a time: bounds the memory of planning a run
QUEUE_SLACK = 2  # queue holds this many requests per worker, so workers never wait on the feeder
CANCEL_GRACE_SECONDS = 2.0  # an interrupt waits at most this long for in-flight work to wind down

# Retries: llmframe's policy is the only one (the SDKs' own retries are off)
MAX_ATTEMPTS = 6  # per request, first try included
BACKOFF_BASE_SECONDS = 0.5  # exponential backoff with full jitter, when the server gives no Retry-After
BACKOFF_CAP_SECONDS = 60.0
RETRY_STATUSES = frozenset({408, 409, 429})  # plus every 5xx (and 529, Anthropic's "overloaded")
POOL_PAUSE_STATUSES = frozenset({429, 503, 529})  # the server is saturated: the whole pool waits, not one worker
BREAKER_FAILURES = 25  # this many requests failing in a row stop the run

# Structured outputs
INVALID_ANSWER_RETRIES = 2  # an answer that does not validate is asked again this many times
CORRECTION_PROMPT = (
    "Your answer did not match the required format: {problem}. "
    "Reply again with only the JSON object, matching the schema exactly."
)
VALIDATION_MESSAGE_CHARS = 300  # validation errors are cut to this length in the error column

# Rate limits
RATE_BURST_SECONDS = 1.0  # a bucket holds this many seconds of its rate: a small burst
LEARNED_LIMIT_MARGIN = 0.95  # pace at this share of a limit the server reports, to stay clear of 429s
RAMP_UP_SPACING_SECONDS = 0.01  # after a pause, workers resume at most this far apart instead of all at once ...
RAMP_UP_SHARE = 0.02  # ... and at least this share of the pause apart, so short pauses end quickly
CHARS_PER_TOKEN = 4  # prompt-length estimate before sending; corrected from real usage afterwards
OUTPUT_TOKENS_GUESS = 256  # output allowance in the TPM estimate when max_tokens is not set

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
SDK_MAX_RETRIES = 0  # retries are counted and paced by llmframe alone
ANTHROPIC_MAX_TOKENS = 1024  # Anthropic requires max_tokens; sent when the call sets none

# Local models (transformers, vLLM)
TRANSFORMERS_BATCH_SIZE = 16  # rows per generate call; halved on out-of-memory
LOCAL_SORT_BATCHES = 8  # the executor hands over this many batches at once, sorted by length to cut padding
LOCAL_MAX_TOKENS = 512  # max_new_tokens when the call sets no max_tokens (transformers' own default is 20 in all)
VLLM_GROUP_SIZE = 1024  # requests handed to vLLM's scheduler at once; Ctrl-C and progress act between groups

# Output
DEFAULT_OUTPUT = "response"
ERROR_SUFFIX = "_error"
REPORT_ATTR = "llmframe"
ERROR_SAMPLES = 5  # distinct error messages kept in the run report
REPORT_TEXT_CHARS = 200  # an error message is cut to this length in the report's HTML view
REMEMBERED_CALLS = 64  # recent generate calls kept in memory for retry_failed()

# Progress
PROGRESS_REFRESH_SECONDS = 0.25  # bar redraws at most this often: no flood in notebooks or logs
