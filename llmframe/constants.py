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
# The longest a run waits on the server's word: one Retry-After or limit reset, and the time without an answer
# since a refusal (a 429 storm). Two minutes ride out any per-minute limit window twice; longer means the
# account's limits or quota, not the pace, are the problem, and the run stops with a message instead of hanging.
MAX_WAIT_SECONDS = 120.0
# Error codes of a 429 (or 402) that mean the account's credit or quota is spent: billing, not rate, so the run
# stops at once. OpenAI: insufficient_quota; Anthropic: billing_error, enforced_spend_limit_reached.
QUOTA_ERROR_CODES = frozenset({"insufficient_quota", "billing_error", "enforced_spend_limit_reached"})
BREAKER_FAILURES = 25  # this many requests failing in a row stop the run
# A 5xx whose error says one of these (lower case, "_" read as " ") blames the request, not the server,
# so it is not retried: some servers and gateways answer a request they cannot take with a 500
# (llama.cpp's Python server: "Input should be 'text' or 'json_object'"; LiteLLM: "BadRequestError").
# Specific phrases only: a bare "invalid" would also match a proxy's "invalid response from upstream".
INVALID_REQUEST_MARKERS = (
    "invalid request", "bad request", "badrequest", "input should be", "validation error", "field required",
    "extra inputs are not permitted", "unrecognized request argument", "unknown parameter", "invalid parameter",
    "invalid argument", "invalid value", "invalid type", "not supported", "unsupported",
)
ERROR_BODY_CHARS = 4096  # of an error reply read to classify it: an HTML page or a traceback can be long
EMPTY_ANSWER_RETRIES = 1  # an empty answer that claims to be complete is asked again once in the run

# Structured outputs
INVALID_ANSWER_RETRIES = 2  # an answer that does not validate is asked again this many times
SEEN_ANSWERS = 1_024  # structured answers of a run checked once per distinct text (columns mode): so many kept
SEEN_ANSWER_CHARS = 256  # of at most this length (an operator's verdict or label, not a free-form answer)
CORRECTION_PROMPT = (
    "Your answer did not match the required format: {problem}. "
    "Reply again with only the JSON object, matching the schema exactly."
)
VALIDATION_MESSAGE_CHARS = 300  # validation errors are cut to this length in the error column
# Of an invalid answer, this much is sent back with the correction (its head and tail): every re-ask
# repeats the prompt, so a long bad answer sent whole would push the next one past the model's context.
CORRECTION_ANSWER_CHARS = 2000
STRUCTURED_MODES = ("json_schema", "json_object")  # structured=: the schema sent natively, or JSON mode
# structured="json_object": the schema goes in the prompt instead, after the last user message's text.
SCHEMA_PROMPT = "\n\nAnswer with only a JSON object that matches this JSON Schema:\n{schema}"

# Rate limits
RATE_BURST_SECONDS = 1.0  # a bucket holds this many seconds of its rate: a small burst
LEARNED_LIMIT_MARGIN = 0.95  # pace at this share of a limit the server reports, to stay clear of 429s
RAMP_UP_SPACING_SECONDS = 0.01  # after a pause, workers resume at most this far apart instead of all at once ...
RAMP_UP_SHARE = 0.02  # ... and at least this share of the pause apart, so short pauses end quickly
CHARS_PER_TOKEN = 4  # prompt-length estimate before sending; corrected from real usage afterwards
OUTPUT_TOKENS_GUESS = 256  # output allowance in the TPM estimate when max_tokens is not set
SHARED_BLOCK_SECONDS = 0.1  # a process sharing a budget (Ray actors) draws this many seconds' worth at a time
# Rate-limit headers, (limit, remaining, reset) with "{kind}" for "requests" or "tokens": each provider
# declares the dialects its servers speak. OpenAI's is also what most compatible servers and gateways send.
OPENAI_RATELIMIT_HEADERS = ("x-ratelimit-limit-{kind}", "x-ratelimit-remaining-{kind}", "x-ratelimit-reset-{kind}")
ANTHROPIC_RATELIMIT_HEADERS = ("anthropic-ratelimit-{kind}-limit", "anthropic-ratelimit-{kind}-remaining",
                               "anthropic-ratelimit-{kind}-reset")

# Ray Data (llmframe.ray)
RAY_CONCURRENCY = 1  # actors in the pool; each runs batch.llm.generate with its own max_concurrency
RAY_BATCH_ROWS = 1024  # rows per batch handed to an actor: one generate call, one cache transaction per chunk
RAY_API_ACTOR_CPUS = 0.5  # an actor calling an API waits on the network; a whole CPU each would starve reads
RAY_BUDGETS = ("shared", "split")  # one budget actor for the cluster, or rpm/tpm divided evenly among actors

# Cache
CACHE_ENV_VAR = "LLMFRAME_CACHE_DIR"
CACHE_APP_NAME = "llmframe"
CACHE_SIZE_LIMIT = 16 * 2**30  # answers cost money: evict only far beyond any normal working set
CACHE_SQLITE_MMAP_BYTES = 0  # no memory map (diskcache: 64 MB): a truncated file would kill the process (SIGBUS)
CACHE_SQLITE_PAGES = 2**11  # SQLite's page cache per connection: 8 MB of 4 KB pages (diskcache: 32 MB)
CACHE_BACKLOG_ROWS = 4096  # answers waiting for the disk beyond which no new request is sent
CACHE_BACKLOG_WAIT_SECONDS = 0.01  # how often a held-back feeder looks again
# A write this quick proves the disk fast: answers are then written on the loop itself, which saves a thread
# hand-off per answer (~2 ms on a busy machine); a slower one sends the writes back to the writer thread.
CACHE_INLINE_WRITE_SECONDS = 0.001
CACHE_SLOW_WRITE_SECONDS = 0.02  # a write on the cache thread this long (waits for the GIL aside) stays there
CACHE_INLINE_AFTER_WRITES = 3  # quick writes in a row on the thread before the loop takes over
# With a journal (stores/journal.py) answers are safe once appended, and committed this often, or once this many
# wait; such a commit (a few hundred rows) stays on the loop while it takes at most a tenth of the interval.
CACHE_JOURNAL_SECONDS = 0.2
CACHE_JOURNAL_ROWS = 2048
CACHE_JOURNAL_INLINE_SECONDS = 0.02
CACHE_KEY_VERSION = 1  # bump when the key's canonical form changes
CACHE_URL_ENV_VAR = "LLMFRAME_CACHE_URL"  # a shared store (postgresql://...) for every run that names no cache_dir
CACHE_URL_SCHEMES = ("postgresql", "postgres")  # cache="<scheme>://..." means the PostgreSQL store
CACHE_RECORD_FORMAT = 2  # the shared store's record format (Response.to_cache): bump when it changes
# (2: embeddings' values are binary, plan.vector_value; format 1's values still read)
PG_TABLE = "llmframe_answers"  # in the role's search_path: its schema is the DBA's choice
PG_META_TABLE = "llmframe_meta"  # the store's format, so an older llmframe refuses a newer store
PG_POOL_SIZE = 4  # connections per process: the feeder's lookups, the writer thread, admin commands
PG_CONNECT_TIMEOUT_SECONDS = 10  # a server that does not answer is an error, not a hang
PG_POOL_TIMEOUT_SECONDS = 10.0  # how long a lookup or write waits for a connection from the pool
PG_RETRY_SECONDS = 5.0  # after a lost connection, calls fail at once for this long instead of each waiting
PG_PROBE_TIMEOUT_SECONDS = 1.0  # then one call waits this long for a connection, to see whether it is back
PG_COPY_ROWS = 2000  # rows per round trip when `llmframe cache copy` streams a store
# The providers' own endpoints, normalised (each provider class declares its own). Answers from any other
# server (a simulator, a proxy, a local server) are keyed by its endpoint too; these are left out of the key,
# so caches made before stay valid.
OPENAI_ENDPOINT = "https://api.openai.com/v1"
ANTHROPIC_ENDPOINT = "https://api.anthropic.com"
GEMINI_ENDPOINT = "https://generativelanguage.googleapis.com"
GEMINI_ENDPOINT_DOMAIN = ".googleapis.com"  # Vertex AI's regional endpoints are Google's too

# Providers
PROVIDER_ENTRY_POINTS = "llmframe.providers"  # the entry-point group of provider plugins: name = model= prefix

# HTTP
REQUEST_TIMEOUT_SECONDS = 600.0  # one attempt, end to end: a reply trickling in cannot outlast it (OpenAI's default)
CONNECT_TIMEOUT_SECONDS = 10.0
SDK_MAX_RETRIES = 0  # retries are counted and paced by llmframe alone
ANTHROPIC_MAX_TOKENS = 1024  # Anthropic requires max_tokens; sent when the call sets none

# Local models (transformers, vLLM)
TRANSFORMERS_BATCH_SIZE = 16  # rows per generate call; halved on out-of-memory
LOCAL_SORT_BATCHES = 8  # the executor hands over this many batches at once, sorted by length to cut padding
LOCAL_MAX_TOKENS = 512  # max_new_tokens when the call sets no max_tokens (transformers' own default is 20 in all)
LOCAL_EMBEDDING_PACK = 256  # inputs per embedding call of a local model: progress and Ctrl-C act between calls
VLLM_GROUP_SIZE = 1024  # requests handed to vLLM's scheduler at once; Ctrl-C and progress act between groups
VLLM_MEDIA_GROUP_SIZE = 64  # requests with images handed to vLLM at once: their decoded pictures are in memory

# Output
DEFAULT_OUTPUT = "response"
ERROR_MODES = ("column", "raise")  # errors=: a failed row's error in a column, or raise after the run; first: default
OUTPUT_MODES = ("columns", "object")  # output_mode= of structured outputs: a column per field, or one of objects
# dtype_backend= of the pandas face, as pandas' readers take it: None (pandas' defaults), nullable numpy, or ArrowDtype.
DTYPE_BACKENDS = (None, "numpy_nullable", "pyarrow")
MISSING_MODES = ("skip", "raise")  # missing=: a row with a missing value is left unanswered, or stops the call
ERROR_SUFFIX = "_error"
REPORT_ATTR = "llmframe"
ERROR_SAMPLES = 5  # distinct error messages kept in the run report
# finish_reasons' key for answers that came with none ("finish_reason": null): JSON keys are strings,
# and "None" would read like a reason the provider gave.
NO_FINISH_REASON = "unknown"
FAILED_ROWS_WARNING_SHARE = 0.5  # a run where more than this share of rows failed warns: a script must not miss it
REPORT_TEXT_CHARS = 200  # an error message is cut to this length in the report's HTML view
REMEMBERED_CALLS = 64  # recent generate calls kept in memory for retry_failed()
REMEMBERED_JOBS = 64  # finished background and batch jobs llmframe.jobs() still lists (running ones: all)
NOT_ANSWERED = "not answered (the run stopped first)"  # the error column of a request a run never answered
JOB_PENDING = "pending: the job is still running (job.result() once it ends)"  # a partial result's unanswered rows
JOB_CANCELLED = "not answered: the job was cancelled (re-run the call: finished answers are cached)"

# Progress
PROGRESS_REFRESH_SECONDS = 0.25  # bar redraws at most this often: no flood in notebooks or logs
PROGRESS_ERROR_CHARS = 80  # a run where every row failed quotes its first error in the bar, cut to this length
PAUSE_SHOWN_SECONDS = 1.0  # the bar says "paused until ..." for pool pauses longer than this; shorter ones flicker

# Native batch mode (provider batch APIs: half price, their own quotas)
BATCH_MODES = ("online", "batch", "auto")
BATCH_AUTO_MIN_REQUESTS = 5000  # mode="auto" uses the batch API from this many distinct requests
# Per job, from each provider's documented limits: (requests, bytes of the requests). A provider class
# with a batch API declares its own (Provider.batch_limits).
OPENAI_BATCH_LIMITS = (50_000, 200 * 2**20)  # one input file: 50,000 requests, 200 MB
ANTHROPIC_BATCH_LIMITS = (100_000, 256 * 2**20)  # one Message Batch: 100,000 requests, 256 MB
GEMINI_BATCH_LIMITS = (1_000_000, 2 * 2**30)  # one input file of at most 2 GB
BATCH_DEFAULT_LIMITS = OPENAI_BATCH_LIMITS  # a batch API that declares none: the strictest of the three
GEMINI_INLINE_BYTES = 20 * 2**20  # Gemini takes requests inline below this payload size, as a file above
BATCH_POLL_ENV_VAR = "LLMFRAME_POLL_INTERVAL"
BATCH_POLL_SECONDS = 30.0  # between polls of a running job, unless poll_interval= or the variable says
BATCH_FIRST_POLL_SECONDS = 1.0  # first polls come sooner, doubling up to the interval: small jobs end fast
BATCH_COMPLETION_WINDOW = "24h"  # OpenAI's only window
BATCH_SUBMIT_CONCURRENCY = 8  # jobs created at once
# Waits before asking a batch API call (create, find, results, cancel, a listing's poll) again after a
# passing failure (5xx, 429, no connection); a server's Retry-After is honoured up to MAX_WAIT_SECONDS.
BATCH_CALL_RETRY_SECONDS = (1.0, 4.0, 16.0)
BATCH_FIND_SLACK_SECONDS = 3600.0  # a re-attaching run looks this far back for a batch it created but never recorded
BATCH_STATE_DIR = "batches"  # job state files, inside the cache directory

# Usage and cost
USAGE_SUFFIXES = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
                  "cost", "cached",
                  "latency_s",
                  "finish_reason")  # usage=True
ESTIMATE_SAMPLES = 3  # rendered prompts shown by estimate()
MIN_OUTPUT_TOKENS = 1  # the low end of an estimate's output range, per request
ESTIMATE_API_KEY = "estimate-only"  # what a dry run (estimate, sweep(dry_run=True)) plans with: it sends nothing

# Sweeps
SWEEP_CONFIG_COLUMNS = ("model", "template", "repeat")  # plus one column per swept parameter
CONFIDENCE_Z = 1.96  # summary()'s interval: mean +- z * standard error (normal approximation, 95%)
BUDGET_NOT_SENT = "not sent: the budget max_cost={max_cost} would have been exceeded"

# llmframe run (streaming files)
STREAM_BATCH_ROWS = 50_000  # rows per chunk through generate, and per output row group
CSV_BLOCK_BYTES = 16 * 2**20  # CSV / JSON Lines read in blocks this big; column types come from the first one
PROVENANCE_KEY = "llmframe"  # the Parquet schema metadata key holding the run's provenance
PARTIAL_SUFFIX = ".llmframe-partial"  # an output being written: renamed into place only once complete

# Embeddings (df.llm.embed) and the vector operations on their column
DEFAULT_EMBEDDING_MODEL = "openai:text-embedding-3-small"
DEFAULT_EMBEDDING_OUTPUT = "embedding"
# Most inputs, and estimated tokens, one embedding request carries (a provider declares its own, see
# Provider.embedding_limits). OpenAI: 2,048 inputs and 300,000 tokens per request; Gemini: 100 per batch call.
OPENAI_EMBEDDING_LIMITS = (2048, 300_000)
GEMINI_EMBEDDING_LIMITS = (100, 100 * 2048)
OPENAI_EMBEDDING_INPUT_TOKENS = 8191  # one input's limit on OpenAI's embedding models
GEMINI_EMBEDDING_INPUT_TOKENS = 2048  # gemini-embedding-001 and text-embedding-004
EMBEDDING_MIN_PACK = 64  # inputs per request at least (the provider's most permitting), however few workers wait
EMBEDDING_PACK_SHARE = 0.9  # packs fill this share of the token cap: the estimate (chars / 4) is rough
EMBEDDING_KEY = "embedding"  # the params entry that marks an embedding request (and keeps its keys apart)
VECTOR_BLOCK_ROWS = 8192  # rows of the left side scored at a time by search, sim_join and dedup: bounds memory
SEARCH_K = 10
DEDUP_THRESHOLD = 0.95
SCORE_COLUMN = "score"

# Media: images and documents in templates (llmframe.image, llmframe.document)
MEDIA_READ_BLOCK_BYTES = 1 << 20  # a file is hashed and read a block at a time, never whole in memory twice
EMBEDDING_MEDIA_TOKENS = 258  # an image or page in an embedding input, for packing (Gemini bills a small image so)
MEDIA_RENDER_CHUNK_ROWS = 512  # rows of a media template keyed at a time (Arrow binary cells are copies)
MEDIA_DIGEST_CACHE_ENTRIES = 1_000_000  # files whose digest is kept by (device, inode, size, times) in the process
MEDIA_DIGEST_FILE = "media-digests.sqlite"  # in the cache directory: the same, for a re-run in a new process
MEDIA_DIGEST_FILE_TIMEOUT_SECONDS = 5.0
FETCH_URL_TIMEOUT_SECONDS = 30.0  # fetch_urls=True: one download's most seconds
FETCH_URL_MAX_BYTES = 20 * 2**20  # fetch_urls=True: a download past this many bytes fails its row
# The most bytes of one image or document each API takes inline (OpenAI: 20 MB an image, 32 MB a PDF;
# Anthropic: 5 MB an image, 32 MB a PDF; Gemini: 20 MB inline, larger ones go through its Files API).
OPENAI_MEDIA_MAX_BYTES = {"image": 20 * 2**20, "document": 32 * 2**20}
ANTHROPIC_MEDIA_MAX_BYTES = {"image": 5 * 2**20, "document": 32 * 2**20}
GEMINI_INLINE_MAX_BYTES = 20 * 2**20
GEMINI_FILE_MAX_BYTES = 2 * 2**30  # the Files API's most per file
GEMINI_BATCH_UPLOAD_CONCURRENCY = 8  # batch mode: files uploaded at once before a batch is created
GEMINI_FILES_PAGE = 100  # files listed a page at a time (a batch collected by another process finds its files)

# Cold start (faces/accessors.py): the lean transport's HTTP library (aiohttp, 0.13-0.2 s to import) and the face
# (the engine behind df.llm, ~0.07 s) are imported on a background thread once pandas or Polars and llmframe are
# both imported, so a first call made a moment later does not pay for them; LLMFRAME_PRELOAD=0 turns it off.
PRELOAD_ENV_VAR = "LLMFRAME_PRELOAD"
PRELOAD_MODULES = ("aiohttp",)
PRELOAD_DELAY_SECONDS = 0.05  # the thread starts importing after this: the rest of the user's imports go first

# The run memo (llmframe/memo/): a call's last result per cache directory, answered a chunk of rows at a time.
MEMO_ENV_VAR = "LLMFRAME_MEMO"  # "0": no run memo (every call takes the per-row path; benchmarks compare the two)
MEMO_NO_EARLIER_RUN = "no earlier run of this call in this cache"  # the report's not_cached_because on a first run
MEMO_DIRECTORY = "memo"  # inside the diskcache directory, so deleting the cache deletes its memo
MEMO_VERSION = 1  # a memo written by another version of its format is not read
MEMO_CHUNK_ROWS = 4_096  # rows per fingerprint: a changed row sends its chunk through the per-row path
MEMO_MAX_CALLS = 64  # calls whose memos are kept per cache directory (a call's memos count as one), LRU first
MEMO_MAX_BYTES = 1 << 30  # and their total size
MEMO_OPEN_FILES = 16  # memo files kept open (memory-mapped) in a process between calls, most recently used
MEMO_BATCH_ROWS = 131_072  # rows per record batch of a memo file: few batches, each copied alone when written
# Provider prompt caching (plan/prefix.py, "Paying less" in the README): never part of a cache key
PROMPT_CACHE_KEY_PREFIX = "llmframe-"  # OpenAI's prompt_cache_key: this, then a digest of model and static prefix
ANTHROPIC_CACHE_PARAM = "llmframe_cache_prefix"  # planned params entry the Anthropic provider turns into cache_control
# Anthropic's documented minimum cacheable prefix, in tokens, by model name (first match; else the default).
ANTHROPIC_CACHE_MINIMUMS = (("opus-4-6", 4096), ("opus-4-5", 4096), ("haiku-4-5", 4096), ("sonnet-4-6", 2048),
                            ("haiku-3", 2048), ("3-haiku", 2048), ("3-5-haiku", 2048))
ANTHROPIC_CACHE_MINIMUM = 1024  # Sonnet 4.5, Sonnet 4, Opus 4.1, Opus 4, Sonnet 3.7
OPENAI_CACHE_MINIMUM = 1024  # OpenAI caches prompts from 1,024 tokens, in steps of 128
OPENAI_CACHE_STEP = 128
GEMINI_CACHE_MINIMUMS = (("pro", 4096),)  # Gemini 2.5's implicit caching: Pro from 4,096 tokens, Flash from 1,024
GEMINI_CACHE_MINIMUM = 1024
# context= on Gemini: an explicit cached content (caches.create) where it holds at least the model's documented
# minimum (ai.google.dev/gemini-api/docs/caching: 2,048 tokens on Gemini 2.5 Flash and Pro, 4,096 on Gemini 3),
# kept for GEMINI_CONTEXT_CACHE_TTL_SECONDS, extended while the run goes on, deleted when it ends
GEMINI_CONTEXT_CACHE_MINIMUMS = (("gemini-2.5", 2048), ("gemini-3", 4096))
GEMINI_CONTEXT_CACHE_MINIMUM = 4096  # other models: the larger documented minimum
GEMINI_CONTEXT_CACHE_TTL_SECONDS = 600
GEMINI_CONTEXT_PARAM = "llmframe_context_cache"  # planned params entry: the leading messages the cache holds
PREFIX_GROUP_CHARS = 16_384  # function templates: each chunk's requests are sent sorted by this much of their prompt
PROMPT_CACHE_WARM_TOKENS = 1024  # a static prefix this long: the run's first request is answered before the rest go


# Several rows per request (rows_per_request=k, plan/packing.py)
PACK_MAX_ROWS = 100  # rows one request may carry
PACK_ITEM_TOKENS = 8  # an item's framing in the request (<item id="n">...</item>), for estimates
PACK_ANSWER_TOKENS = 12  # an answer's framing in the reply ({"id": n, "answer": ...}): added to max_tokens per row
PACK_SCHEMA_NAME = "llmframe_items"  # the packed answer's schema title: a list of {id, answer}
PACK_PROMPT = ("\n\nThe {count} numbered items below are separate inputs. Do the task above for each item on its "
               "own, as if it were the only one, and give exactly one answer per item, with the item's id.\n\n")

# Model cascades (cascade=, ops/cascade.py)
CASCADE_CONFIDENCE_FIELD = "confidence"  # the output schema's field a row's confidence is read from (0 to 1)
CASCADE_THRESHOLD = 0.8  # rows less confident than this go on to the next model, unless a threshold is given
CASCADE_AGREEMENT = 0.95  # calibrate=n chooses thresholds for this agreement with the last model on the sample
CASCADE_SEED = 0  # the calibration sample is drawn with this seed: the same rows on every run
# estimate(cascade=...): the share of the rows a model is given that it is assumed to pass on to the next (an
# assumption, said in the estimate's notes: the share is known only once the answers are in)
CASCADE_ESTIMATE_SHARE = 0.2

# Semantic operators (llmframe.ops: df.llm.filter, classify, join, top_k, rank, agg)
JOIN_CANDIDATES = 5  # right rows per left row whose pairs a join asks about, picked by embeddings
JOIN_ALL_PAIRS_LIMIT = 10_000  # pairs a join with candidates=None asks without max_cost= or a dry run seen first
SCORE_SCALE = (0, 100)  # the pointwise scores of top_k and rank: an integer in this range
TOP_K_MARGIN = 5  # top_k compares pairwise the rows scored within this many points of the k-th best score
AGG_CONTEXT_TOKENS = 32_000  # the most input tokens one agg request carries (context_tokens=)

# Tools per row (generate(tools=[fn, ...]): engine/toolloop.py)
TOOL_MAX_TURNS = 5  # model turns per row at most: each one is a request, billed and rate-limited
TOOL_TIMEOUT_SECONDS = 30.0  # one tool call's limit; a hung call becomes an error result for the model
TOOL_THREADS = 16  # worker threads shared by the sync tools of every run (async tools run on the loop)
TOOL_OUTPUT_CHARS = 16_000  # a tool result sent back to the model is cut to this many characters
TOOL_TURNS_ASSUMED = 2  # estimate()'s typical row: one turn calling tools, one answering (the high end: max_turns)
TOOL_KEY = "llmframe_tools"  # the key params' entry holding the tools' names, schemas and tools_version
TRANSCRIPT_SUFFIX = "transcript"  # transcript=True: the column <output>_transcript holds the row's tool calls
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # what every provider accepts as a function name

# Issue 26: more APIs. OpenAI's reasoning efforts (the models that take each differ; the API judges), its two
# text APIs, and what an estimate takes a reasoning model to think per request where max_tokens does not bound it.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
OPENAI_APIS = ("chat", "responses")
# Estimated reasoning tokens per request by effort: a guess from OpenAI's guidance (reasoning takes hundreds
# to tens of thousands of tokens); max_tokens (max_output_tokens) caps reasoning and answer together.
REASONING_TOKENS_ESTIMATE = {"none": 0, "minimal": 256, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
CALLBACK_ERRORS = "callback_errors"  # the run report's list of what run callbacks raised
AZURE_API_VERSION_EXAMPLE = "2025-04-01-preview"  # named in the error of an Azure call without an API version
MISTRAL_ENDPOINT = "https://api.mistral.ai"
MISTRAL_BASE_URL_ENV = "MISTRAL_BASE_URL"  # read by llmframe (the SDK has no such variable): another server
MISTRAL_RATELIMIT_HEADERS_REQUESTS = ("x-ratelimit-limit-{kind:.3}-minute", "x-ratelimit-remaining-{kind:.3}-minute",
                                      "x-ratelimit-reset-{kind:.3}-minute")
MISTRAL_RATELIMIT_HEADERS_TOKENS = ("x-ratelimit-limit-{kind}-minute", "x-ratelimit-remaining-{kind}-minute",
                                    "x-ratelimit-reset-{kind}-minute")
MISTRAL_BATCH_TIMEOUT_HOURS = 24  # a Mistral batch job's timeout_hours (as the other providers' 24-hour windows)

# The simulator takes bodies up to this size (aiohttp's default is 1 MiB): batch files as large as OpenAI's 200 MB
SIM_MAX_BODY_BYTES = 256 * 2**20
