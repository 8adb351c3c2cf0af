"""SQLAlchemy tables. Metric points are stored as packed columnar chunks, not a row per point."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(500), nullable=False, unique=True),
    Column("artifact_location", Text, nullable=False),
    Column("lifecycle_stage", Integer, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column("experiment_id", ForeignKey("experiments.experiment_id"), primary_key=True),
    Column("key", String(500), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("experiment_id", ForeignKey("experiments.experiment_id"), nullable=False),
    Column("run_name", String(500), nullable=False),
    Column("status", Integer, nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("lifecycle_stage", Integer, nullable=False),
    Column("parent_run_id", String(32), nullable=True),
    Column("artifact_uri", Text, nullable=False),
    # Who started the run, as the client said ("" when it did not say; MLflow's user_id).
    Column("user_id", String(256), nullable=False, server_default=""),
    # Run search filters by experiment and, by default, orders by start time.
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("key", String(500), primary_key=True),
    Column("value", Text, nullable=False),
    # Search finds the runs that have a key; values stay unindexed (up to 64 KiB, too long
    # for a PostgreSQL btree entry).
    Index("ix_params_key", "key", "run_id"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("key", String(500), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_tags_key", "key", "run_id"),
)

# Datasets (MLflow's log_input): one row per (experiment, name, digest); a run's inputs name
# them with a context ("training", "eval", ...; "" for none) and tags of their own. Search
# matches runs by an input's dataset name or digest, or by its context.
datasets = Table(
    "datasets",
    metadata,
    Column("dataset_id", String(32), primary_key=True),
    Column("experiment_id", ForeignKey("experiments.experiment_id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_type", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("schema", Text, nullable=True),  # JSON, as the client gave it
    Column("profile", Text, nullable=True),  # JSON, as the client gave it
    UniqueConstraint("experiment_id", "name", "digest"),
    Index("ix_datasets_name", "name"),
    Index("ix_datasets_digest", "digest"),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("dataset_id", ForeignKey("datasets.dataset_id"), primary_key=True),
    Column("context", String(500), nullable=False, server_default=""),
    Index("ix_run_inputs_dataset", "dataset_id", "run_id"),
    Index("ix_run_inputs_context", "context", "run_id"),
)

run_input_tags = Table(
    "run_input_tags",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("dataset_id", String(32), primary_key=True),
    Column("key", String(500), primary_key=True),
    Column("value", Text, nullable=False),
    ForeignKeyConstraint(["run_id", "dataset_id"], ["run_inputs.run_id", "run_inputs.dataset_id"]),
)

# value is NULL exactly when the latest value is NaN (SQLite cannot store NaN).
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("key", String(500), primary_key=True),
    Column("value", Float, nullable=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    # Search compares latest values of one key: `metrics.loss < 0.3` is a range scan.
    Index("ix_latest_metrics_key_value", "key", "value"),
)

# Ids of applied requests (LogBatch, CreateRun, CreateExperiment), written in the request's
# own transaction: a retry finds its id here and is not applied again. ``resource`` is the id
# of what the request wrote or created. Rows older than limits.APPLIED_REQUEST_RETENTION_S are
# pruned (idempotency.py), oldest first through the applied_time index.
applied_requests = Table(
    "applied_requests",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("resource", String(500), nullable=False),
    Column("applied_time", BigInteger, nullable=False),
    Column("method", String(64), nullable=False, server_default="LogBatch"),
    Index("ix_applied_requests_applied_time", "applied_time"),
)

# One row holds many points of one series from one rank; ``points`` is the wire form of a
# RankedSeries carrying only steps, timestamps and values (see metrics/codec.py).
metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("chunk_id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.run_id"), nullable=False),
    Column("key", String(500), nullable=False),
    Column("rank", Integer, nullable=False, server_default="0"),
    Column("n", Integer, nullable=False),
    Column("min_step", BigInteger, nullable=False),
    Column("max_step", BigInteger, nullable=False),
    # Block extremes of the points sorted by step (metrics/summary.py), so a chart view reads
    # this instead of the points; NULL for small chunks and for chunks written before 0003.
    # It comes before ``points``: SQLite reaches a column stored after a big blob only by
    # walking the blob's overflow pages, as slow as reading the blob.
    Column("summary", LargeBinary, nullable=True),
    Column("points", LargeBinary, nullable=False),
    Index("ix_metric_chunks_series", "run_id", "key", "min_step"),
)

# The highest batch sequence number committed per stream writer, written in the same
# transaction as the batch's points: a batch resent after a reconnect or a restart finds its
# seq at or below this mark and is skipped. A writer id belongs to the writer that first used
# it: ``key_hash`` is the hex SHA-256 of its writer_key, ``owner`` that of its bearer token
# when the server requires tokens (else NULL). ``epoch`` counts its handshakes: a stream
# holds the epoch of its own, and a flush refuses a batch whose epoch is older than the
# stored one (a newer stream took the writer over). Rows from before 0006 have no key hash;
# the first handshake with a key claims them.
ingest_writers = Table(
    "ingest_writers",
    metadata,
    Column("writer_id", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
    Column("key_hash", String(64), nullable=True),
    Column("owner", String(64), nullable=True),
    Column("epoch", BigInteger, nullable=False, server_default="0"),
)

# Points committed by a group-commit flush and not yet compacted into chunks: one row per
# flush, however many series it holds (see metrics/flush_log.py). The compactor moves rows into
# metric_chunks in the background, and before any history read.
metric_log = Table(
    "metric_log",
    metadata,
    Column("log_id", Integer, primary_key=True, autoincrement=True),
    Column("points", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
)

# Batches the server refused, per writer, written in the flush that moved the writer's
# high-water mark past them: a client that reconnects before it read a rejection learns it
# from the handshake instead of taking the batch for stored.
ingest_rejections = Table(
    "ingest_rejections",
    metadata,
    Column("writer_id", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("created_time", BigInteger, nullable=False),
)

# The Model Registry (registry/). A registered model is named by ``name`` in the API and
# referenced by ``model_id`` here, so a rename is one row (and the copy of the name each
# version keeps for search). ``next_version`` is the number its next version gets: a create
# takes it with UPDATE ... RETURNING, whose row lock holds concurrent creates of the model
# until it commits or rolls back, so numbers never repeat nor gap.
registered_models = Table(
    "registered_models",
    metadata,
    Column("model_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(500), nullable=False, unique=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("next_version", BigInteger, nullable=False, server_default="1"),
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column("model_id", ForeignKey("registered_models.model_id"), primary_key=True),
    Column("key", String(500), primary_key=True),
    Column("value", Text, nullable=False),
)

# ``name`` is the model's (kept in step by a rename) for search; ``stage`` a ModelStage and
# ``status`` a ModelVersionStatus value.
model_versions = Table(
    "model_versions",
    metadata,
    Column("version_id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", ForeignKey("registered_models.model_id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("source", Text, nullable=False),
    Column("run_id", String(64), nullable=False, server_default=""),
    Column("status", Integer, nullable=False),
    Column("status_message", Text, nullable=False, server_default=""),
    Column("stage", Integer, nullable=False),
    # The name of the token that created it ("" on a server without tokens).
    Column("user_id", String(256), nullable=False, server_default=""),
    UniqueConstraint("model_id", "version"),
    Index("ix_model_versions_name_version", "name", "version"),
    Index("ix_model_versions_run_id", "run_id"),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("version_id", ForeignKey("model_versions.version_id"), primary_key=True),
    Column("key", String(500), primary_key=True),
    Column("value", Text, nullable=False),
)

# One row per alias of a model: moving an alias is an update of its row.
model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", ForeignKey("registered_models.model_id"), primary_key=True),
    Column("alias", String(256), primary_key=True),
    Column("version_id", ForeignKey("model_versions.version_id"), nullable=False),
    Index("ix_model_aliases_version_id", "version_id"),
)

# Every change of the registry, written in the change's transaction (registry/events.py).
# ``event_id`` comes from registry_counters' 'events' row, taken last in the transaction:
# its row lock orders the transactions that record events, so ids are gapless and commit in
# id order, and a watcher that has seen id n has seen every id below it. ``type`` is a
# ModelEventType value; rows older than the retention are pruned, oldest first.
registry_events = Table(
    "registry_events",
    metadata,
    Column("event_id", BigInteger, primary_key=True, autoincrement=False),
    Column("time", BigInteger, nullable=False),
    Column("type", Integer, nullable=False),
    Column("name", String(500), nullable=False),
    Column("version", BigInteger, nullable=False, server_default="0"),
    Column("alias", String(256), nullable=False, server_default=""),
    Column("key", String(500), nullable=False, server_default=""),
    Column("stage", Integer, nullable=False, server_default="0"),
    Column("status", Integer, nullable=False, server_default="0"),
    Column("previous_name", String(500), nullable=False, server_default=""),
    # The name of the token of the call that made the change ("" without tokens).
    Column("actor", String(256), nullable=False, server_default=""),
    Index("ix_registry_events_time", "time"),
)

# Counters of the registry; one row, 'events': the last event id given out.
registry_counters = Table(
    "registry_counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Project runs (projects/): the durable queue of ProjectService. ``seq`` orders the queue
# (oldest first) and pages searches; ``state`` is a ProjectRunState value. ``lease_id`` names
# the current lease (a worker's calls carry it; "" when none), ``lease_expiry_time`` when it
# expires unless renewed (0 when not leased), ``lease_ms`` its duration. ``params`` is JSON,
# a list of [key, value]; ``log_line_count`` the number of rows in project_run_logs, so the
# offset of the next line.
project_runs = Table(
    "project_runs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("project_run_id", String(32), nullable=False, unique=True),
    Column("uri", Text, nullable=False),
    Column("version", String(500), nullable=False),
    Column("entry_point", String(500), nullable=False),
    Column("params", Text, nullable=False),
    Column("experiment_id", String(64), nullable=False),
    Column("experiment_name", String(500), nullable=False),
    Column("run_name", String(500), nullable=False),
    Column("env_manager", String(32), nullable=False),
    Column("max_retries", Integer, nullable=False),
    Column("state", Integer, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("worker_id", String(256), nullable=False, server_default=""),
    Column("lease_id", String(32), nullable=False, server_default=""),
    Column("lease_expiry_time", BigInteger, nullable=False, server_default="0"),
    Column("lease_ms", BigInteger, nullable=False, server_default="0"),
    Column("cancel_requested", Integer, nullable=False, server_default="0"),
    Column("tracking_run_id", String(32), nullable=False, server_default=""),
    Column("exit_code", Integer, nullable=True),
    Column("status_message", Text, nullable=False, server_default=""),
    Column("creation_time", BigInteger, nullable=False),
    Column("start_time", BigInteger, nullable=False, server_default="0"),
    Column("end_time", BigInteger, nullable=False, server_default="0"),
    Column("log_line_count", BigInteger, nullable=False, server_default="0"),
    Index("ix_project_runs_state_seq", "state", "seq"),
    Index("ix_project_runs_experiment_id_seq", "experiment_id", "seq"),
)

# The labels a worker must have to lease a run: a run is leased only by a worker holding every
# label listed here for it.
project_run_labels = Table(
    "project_run_labels",
    metadata,
    Column("run_seq", ForeignKey("project_runs.seq"), primary_key=True),
    Column("label", String(64), primary_key=True),
)

# A run's log lines, numbered from 0 per run (``line``), in the order the worker appended them.
project_run_logs = Table(
    "project_run_logs",
    metadata,
    Column("run_seq", ForeignKey("project_runs.seq"), primary_key=True),
    Column("line", BigInteger, primary_key=True),
    Column("text", Text, nullable=False),
)

# The files of each run's artifacts that are visible: a row is written once storage holds
# all of a file's bytes, checked against its size and SHA-256 (artifacts/service.py), so a
# listing never shows a partial upload. ``path`` is relative to the run's artifact root.
artifact_files = Table(
    "artifact_files",
    metadata,
    Column("run_id", ForeignKey("runs.run_id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("update_time", BigInteger, nullable=False),
)

# Direct uploads to storage that are open (CreateArtifactUploadUrls until Complete or Abort):
# in the database, not in a server's memory, so any replica can complete one. ``storage_id``
# names the multipart upload in storage.
artifact_uploads = Table(
    "artifact_uploads",
    metadata,
    Column("upload_id", String(32), primary_key=True),
    Column("run_id", ForeignKey("runs.run_id"), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("part_size", BigInteger, nullable=False),
    Column("storage_id", Text, nullable=False),
    Column("expire_time", BigInteger, nullable=False),
)

# Access tokens (auth/tokens.py): only the SHA-256 of a secret is kept. ``role`` is a Role
# value; ``experiments`` and ``models`` are the scope as JSON lists ([] for none); times are
# milliseconds, 0 for never (expiration) or not yet (revocation). A name is unique among the
# tokens that are not revoked, so a revoked token's name can be given again.
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("token_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("role", Integer, nullable=False),
    Column("experiments", Text, nullable=False, server_default="[]"),
    Column("models", Text, nullable=False, server_default="[]"),
    Column("creation_time", BigInteger, nullable=False),
    Column("expiration_time", BigInteger, nullable=False, server_default="0"),
    Column("revocation_time", BigInteger, nullable=False, server_default="0"),
    Column("created_by", String(256), nullable=False, server_default=""),
    Index(
        "ix_access_tokens_active_name",
        "name",
        unique=True,
        sqlite_where=text("revocation_time = 0"),
        postgresql_where=text("revocation_time = 0"),
    ),
)
