"""Every size limit the server enforces, in one place (the README's table mirrors it)."""

MAX_KEY_LENGTH = 500
# Run ids are 32 hex digits; a stream batch naming a longer one (or one with a control
# character) is refused before it reaches the database.
MAX_RUN_ID_LENGTH = 64
MAX_NAME_LENGTH = 500
MAX_USER_ID_LENGTH = 256  # a run's user_id (the column's width)
MAX_PARAM_VALUE_LENGTH = 65536
MAX_TAG_VALUE_LENGTH = 65536
MAX_BATCH_PARAMS_AND_TAGS = 10_000
MAX_BATCH_POINTS = 1_000_000
# LogInputs: datasets (names are MAX_NAME_LENGTH; input tags have run tags' key and value
# limits). Widths of the datasets and run_inputs columns where they have one; schema and
# profile are JSON text of any length in the store, bounded here in UTF-8 bytes.
MAX_DATASET_DIGEST_LENGTH = 64
MAX_DATASET_SOURCE_TYPE_LENGTH = 64
MAX_DATASET_SOURCE_LENGTH = 65536
MAX_DATASET_SCHEMA_BYTES = 1024 * 1024
MAX_DATASET_PROFILE_BYTES = 1024 * 1024
MAX_INPUT_CONTEXT_LENGTH = 500
MAX_INPUT_TAGS = 100  # per input
MAX_INPUTS_PER_CALL = 1000
MAX_REQUEST_ID_LENGTH = 128  # LogBatch request_id
# Run start and end times: milliseconds from the epoch to the last one of year 9999.
MAX_TIME_MS = 253_402_300_799_999
# A stream batch's seq is at most this (it is stored as a signed 64-bit integer).
MAX_STREAM_SEQ = 2**63 - 1
MAX_MESSAGE_BYTES = 128 * 1024 * 1024
# The HTTP/2 flow-control window of each stream (app.py): what a client may send ahead of
# what the server has read.
STREAM_WINDOW_BYTES = 4 * 1024 * 1024
# Connection limits against abuse (app.py's channel options; docs/security.md says why each).
# The request headers of one call: gRPC refuses larger ones with RESOURCE_EXHAUSTED. gRPC's
# own default refuses at random between a soft 8 KiB and a hard 16 KiB; both are set to 8 KiB
# here, the size gRPC's protocol suggests, so a refusal does not depend on luck. Our calls send
# a few hundred bytes (a bearer token is about 50), which leaves room for what proxies add.
MAX_METADATA_BYTES = 8 * 1024
# Calls open at once on one connection; more wait on the client's side for one to end. The
# client's heaviest use is a few dozen (4 parallel artifact transfers, watches, the unary
# calls of its threads); 100 is HTTP/2's recommended minimum, and bounds the handlers (and
# their stream windows, STREAM_WINDOW_BYTES each) a single connection can tie up.
MAX_CONCURRENT_STREAMS = 100
# Keepalive pings: a client may ping at most every MIN_PING_INTERVAL_MS with no data flowing
# (the metric stream pings every 20 s to notice a dead connection); each ping sooner is a
# strike, and after MAX_PING_STRIKES strikes the server closes the connection (GOAWAY
# ENHANCE_YOUR_CALM), so pings cannot be used to keep the server busy.
MIN_PING_INTERVAL_MS = 10_000
MAX_PING_STRIKES = 2
# A connection must finish its handshake (TLS, then HTTP/2's preface) within this, or it is
# closed: gRPC's default of 120 s lets a peer that opens sockets and sends nothing hold them.
HANDSHAKE_TIMEOUT_MS = 20_000
DEFAULT_HISTORY_PAGE = 262_144  # one full chunk (metrics/chunks.py MAX_CHUNK_POINTS)
MAX_HISTORY_PAGE = 1_000_000
DEFAULT_SEARCH_PAGE = 1_000
MAX_SEARCH_PAGE = 50_000
# A search page also ends before its runs (experiments) pass this many bytes, estimated from
# the stored sizes; a single larger one is a page of its own up to MAX_MESSAGE_BYTES.
MAX_SEARCH_REPLY_BYTES = 32 * 1024 * 1024
MAX_SEARCH_EXPERIMENT_IDS = 10_000
# Each statement of a search runs at most this long on PostgreSQL (QUERY_TOO_EXPENSIVE).
SEARCH_STATEMENT_TIMEOUT_S = 30
# Enforced by the filter parser (search/parser.py), listed here for the README.
MAX_FILTER_LENGTH = 65_536
MAX_FILTER_NESTING = 64
MAX_FILTER_COMPARISONS = 1_000
MAX_IN_LIST = 10_000
MAX_ORDER_BY_KEYS = 20
# Ingest queue defaults (flags --ingest-max-points, --ingest-max-bytes, --ingest-linger-ms).
INGEST_MAX_POINTS = 4_000_000
INGEST_MAX_BYTES = 256 * 1024 * 1024
INGEST_LINGER_MS = 4.0
# LogBatch request ids are remembered this long (applied_requests): a retry within it is not
# applied twice; one arriving later is applied again. Older ids are pruned at most once per
# interval, at most a batch of rows per round, inside a LogBatch transaction.
APPLIED_REQUEST_RETENTION_S = 24 * 3600
APPLIED_REQUEST_PRUNE_INTERVAL_S = 60.0
APPLIED_REQUEST_PRUNE_BATCH = 1_000
# The Model Registry (registry/): model names are MAX_NAME_LENGTH; tags have run tags' limits.
MAX_ALIAS_LENGTH = 256
MAX_DESCRIPTION_LENGTH = 65536
MAX_MODEL_SOURCE_LENGTH = 65536
MAX_STATUS_MESSAGE_LENGTH = 4096
MAX_MODEL_URI_LENGTH = 1024
MAX_WATCHED_MODELS = 100  # names of one WatchModelEvents call
# Registry events are kept this long by default (flag --registry-event-retention-days), then
# pruned, oldest first, at most a batch per round, at most once per interval, in a registry
# write's transaction; a watcher polls for new ones this often and is sent at most a batch
# of them per message.
REGISTRY_EVENT_RETENTION_S = 7 * 24 * 3600
REGISTRY_EVENT_PRUNE_INTERVAL_S = 60.0
REGISTRY_EVENT_POLL_S = 0.025
REGISTRY_EVENT_BATCH = 1000
# Request bytes parsed and served at once (flag --max-inflight-bytes; budget.py).
MAX_INFLIGHT_BYTES = 256 * 1024 * 1024
# Project runs (projects/): a submission's URI, version and entry point, its params (keys and
# values as a run's), its labels; a lease's duration and a lease call's wait; log appends.
MAX_PROJECT_URI_LENGTH = 4096
MAX_PROJECT_PARAMS = 1000
MAX_PROJECT_LABELS = 32
MAX_LABEL_LENGTH = 64
MAX_PROJECT_RETRIES = 100
MAX_WORKER_ID_LENGTH = 256
DEFAULT_LEASE_S = 30
MAX_LEASE_S = 3600
MAX_LEASE_WAIT_S = 30.0
MAX_LOG_LINE_LENGTH = 65536
MAX_LOG_LINES_PER_APPEND = 10_000
DEFAULT_PROJECT_RUN_PAGE = 100
MAX_PROJECT_RUN_PAGE = 1000
# Expired leases are looked for this often by default (flag --project-lease-check-seconds); a
# waiting lease looks for a run submitted through another replica this often (one submitted
# through its own replica wakes it at once), and a followed log stream for new lines.
PROJECT_LEASE_CHECK_S = 5.0
PROJECT_QUEUE_POLL_S = 0.2
PROJECT_LOG_POLL_S = 0.05
PROJECT_LOG_BATCH = 1000
# Artifacts (artifacts/): a download's chunks are this (page-aligned, and a message with one
# stays under gRPC clients' default 4 MiB receive limit); uploads may send chunks of up to
# 4 MiB (MAX_MESSAGE_BYTES admits more, the proto promises 4 MiB). Files up to 5 TiB
# (S3's largest object). Proxied uploads to S3 go as one PUT below the part size, as a
# multipart upload of parts of that size above it; direct uploads take parts of 5 MiB to
# 5 GiB, at most 10,000 of them. Blocking storage calls run on a pool of this many threads.
ARTIFACT_CHUNK_BYTES = 4 * 1024 * 1024 - 4096
MAX_ARTIFACT_BYTES = 5 * 1024**4
ARTIFACT_S3_PART_BYTES = 8 * 1024 * 1024
MIN_ARTIFACT_PART_BYTES = 5 * 1024 * 1024
MAX_ARTIFACT_PART_BYTES = 5 * 1024**3
MAX_ARTIFACT_PARTS = 10_000
ARTIFACT_IO_THREADS = 16
# Presigned URLs: a download URL works this long, a direct upload stays open this long.
ARTIFACT_DOWNLOAD_URL_TTL_S = 3600
ARTIFACT_DIRECT_UPLOAD_TTL_S = 24 * 3600
# Expired direct uploads are aborted in storage by a later create, at most a batch at a
# time, at most once per interval (per server process).
ARTIFACT_UPLOAD_PRUNE_INTERVAL_S = 60.0
ARTIFACT_UPLOAD_PRUNE_BATCH = 100
DEFAULT_ARTIFACT_PAGE = 1_000
MAX_ARTIFACT_PAGE = 10_000
