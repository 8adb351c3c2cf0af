"""Domain errors, and the one place that maps them to gRPC status + ErrorInfo + BadRequest.

What leaves the server says what the caller can act on and nothing else: no SQL, bound
parameters, file paths or other clients' data. ``from_exception`` is the one door every
failure passes through on its way out: a domain error as it is; anything else becomes
INTERNAL with an error id that the server's log carries beside the traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc

DOMAIN = "trackline.dev"
# Longest message a status carries: trailers over a few KB make clients fail with
# RESOURCE_EXHAUSTED instead of showing the error.
MAX_MESSAGE_CHARS = 1024
# Longest rendering of a caller's value inside a message (``shown``).
MAX_SHOWN_CHARS = 80
# A status lists at most this many field violations, and only as many as fit in
# MAX_VIOLATION_BYTES (UTF-8 of their fields and descriptions): grpc's C core refuses trailers
# past 8 KiB at random (its soft limit, ``grpc.max_metadata_size``), and the message rides in
# them twice (grpc-message and the status details).
MAX_FIELD_VIOLATIONS = 100
MAX_VIOLATION_BYTES = 5000
# Longest description of one field violation among several.
MAX_LISTED_DESCRIPTION_CHARS = 200

log = logging.getLogger("trackline.errors")


class TracklineError(Exception):
    """Base of domain errors; ``reason`` is the UPPER_SNAKE ErrorInfo reason."""

    code = code_pb2.INTERNAL
    grpc_code = grpc.StatusCode.INTERNAL

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field

    def violations(self) -> list[tuple[str, str]]:
        """The (field, description) pairs of the BadRequest the caller gets: this error's own
        field, if it names one."""
        return [] if self.field is None else [(self.field, self.message)]


class NotFound(TracklineError):
    code = code_pb2.NOT_FOUND
    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TracklineError):
    code = code_pb2.ALREADY_EXISTS
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class InvalidArgument(TracklineError):
    code = code_pb2.INVALID_ARGUMENT
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class ManyProblems(InvalidArgument):
    """Several problems of one request (``validation.Problems`` gathers them), sent as one
    INVALID_ARGUMENT: the first problem's reason and field, a message naming the first
    problem and how many there are, and a field violation per problem, as many as the status
    has room for (MAX_FIELD_VIOLATIONS, MAX_VIOLATION_BYTES). ``problems`` holds those kept,
    ``count`` how many were found in all."""

    def __init__(self, problems: list[InvalidArgument], count: int) -> None:
        first = problems[0]
        listed = len(_fitting(problems))
        named = not first.field or first.message.startswith(first.field)
        where = "" if named else f"{first.field}: "
        more = count - 1
        said = (
            "each listed as a field violation"
            if listed == count
            else f"{count} in all, the first {listed} listed as field violations"
        )
        message = f"{where}{first.message} (and {more} more problem{'s' * (more > 1)}: {said})"
        super().__init__(first.reason, message, first.field)
        self.problems = problems
        self.count = count

    def violations(self) -> list[tuple[str, str]]:
        return _fitting(self.problems)


def _fitting(problems: list[InvalidArgument]) -> list[tuple[str, str]]:
    """The field violations of ``problems`` that fit in a status, in order."""
    out: list[tuple[str, str]] = []
    size = 0
    for problem in problems[:MAX_FIELD_VIOLATIONS]:
        for field, description in problem.violations():
            description = _clip(description, MAX_LISTED_DESCRIPTION_CHARS)
            size += len(field.encode()) + len(description.encode()) + 8  # protobuf framing
            if size > MAX_VIOLATION_BYTES:
                return out
            out.append((field, description))
    return out


class FailedPrecondition(TracklineError):
    code = code_pb2.FAILED_PRECONDITION
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(TracklineError):
    """A position past what is kept or recorded (a watcher resuming from a pruned event)."""

    code = code_pb2.OUT_OF_RANGE
    grpc_code = grpc.StatusCode.OUT_OF_RANGE


class Unauthenticated(TracklineError):
    code = code_pb2.UNAUTHENTICATED
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(TracklineError):
    code = code_pb2.PERMISSION_DENIED
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class Aborted(TracklineError):
    """The call lost a race with another (e.g. a newer stream of the same writer); retrying
    the whole sequence, from the start, is safe."""

    code = code_pb2.ABORTED
    grpc_code = grpc.StatusCode.ABORTED


class Unavailable(TracklineError):
    code = code_pb2.UNAVAILABLE
    grpc_code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(TracklineError):
    """A limit was hit. When waiting helps (a full queue), ``retry_after`` seconds is sent as
    google.rpc.RetryInfo; without it the caller must change the request."""

    code = code_pb2.RESOURCE_EXHAUSTED
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(
        self,
        reason: str,
        message: str,
        field: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason, message, field)
        self.retry_after = retry_after


class Internal(TracklineError):
    """A failure the caller cannot fix; its message names an error id found in the log."""

    code = code_pb2.INTERNAL
    grpc_code = grpc.StatusCode.INTERNAL


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters: an echoed 10k-character id
    must not make the trailer too large to deliver."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]}"


def internal(exc: BaseException, what: str = "the call") -> Internal:
    """Logs ``exc`` with its traceback under a fresh error id and returns the INTERNAL error
    the caller gets: the id, nothing of the exception's text."""
    error_id = uuid.uuid4().hex[:12]
    log.error("error id %s: %s failed", error_id, what, exc_info=exc)
    return Internal(
        "INTERNAL",
        f"{what} failed on the server (error id {error_id}; the server's log has the details)",
    )


def from_exception(exc: BaseException, what: str = "the call") -> TracklineError:
    """The error a caller gets for ``exc``: domain errors pass through; a known failure of the
    store (full, read-only, locked, unreachable, a statement past its time limit) becomes its
    status and reason (``store_failure``); the rest become INTERNAL (``internal``)."""
    if isinstance(exc, TracklineError):
        return exc
    return store_failure(exc, what) or internal(exc, what)


# What the store's failures mean for the caller. The reason's message is followed by the
# error id; it never carries the driver's text (SQL, parameters, file paths).
_STORE_FAILURES: dict[str, tuple[type[TracklineError], str]] = {
    "STORE_FULL": (
        Unavailable,
        "the server's store is out of space; writes fail until an operator frees space",
    ),
    "STORE_READ_ONLY": (
        Unavailable,
        "the server's store is read-only; writes fail until an operator makes it writable",
    ),
    "STORE_BUSY": (Unavailable, "the server's store is busy; retry shortly"),
    "STORE_UNAVAILABLE": (Unavailable, "the server cannot reach its store; retry later"),
    "QUERY_TOO_EXPENSIVE": (
        ResourceExhausted,
        "the query ran past the server's time limit; narrow the filter or ask for a smaller page",
    ),
}
# SQLite result codes (sqlite3.Error.sqlite_errorname, extended codes share the prefix).
_SQLITE_NAMES = (
    ("SQLITE_FULL", "STORE_FULL"),
    ("SQLITE_READONLY", "STORE_READ_ONLY"),
    ("SQLITE_BUSY", "STORE_BUSY"),
    ("SQLITE_LOCKED", "STORE_BUSY"),
    ("SQLITE_CANTOPEN", "STORE_UNAVAILABLE"),
    ("SQLITE_IOERR", "STORE_UNAVAILABLE"),
    ("SQLITE_CORRUPT", "STORE_UNAVAILABLE"),
    ("SQLITE_NOTADB", "STORE_UNAVAILABLE"),
)
# The same failures by message, for drivers that lose the code on the way.
_SQLITE_TEXTS = (
    ("database or disk is full", "STORE_FULL"),
    ("attempt to write a readonly database", "STORE_READ_ONLY"),
    ("database is locked", "STORE_BUSY"),
    ("unable to open database file", "STORE_UNAVAILABLE"),
    ("disk i/o error", "STORE_UNAVAILABLE"),
)
# PostgreSQL SQLSTATEs; a one-character-shorter key matches a whole class.
_SQLSTATES = {
    "53100": "STORE_FULL",  # disk_full
    "25006": "STORE_READ_ONLY",  # read_only_sql_transaction (a hot standby)
    "40001": "STORE_BUSY",  # serialization_failure
    "40P01": "STORE_BUSY",  # deadlock_detected
    "55P03": "STORE_BUSY",  # lock_not_available
    "53300": "STORE_BUSY",  # too_many_connections
    "08": "STORE_UNAVAILABLE",  # connection_exception
    "57P01": "STORE_UNAVAILABLE",  # admin_shutdown
    "57P02": "STORE_UNAVAILABLE",  # crash_shutdown
    "57P03": "STORE_UNAVAILABLE",  # cannot_connect_now
    "57014": "QUERY_TOO_EXPENSIVE",  # query_canceled: statement_timeout
}


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: the DBAPI error of a SQLAlchemy error (``orig``), and the
    driver's own exception behind that (``__cause__``/``__context__``)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 16:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        todo.extend(
            c
            for c in (getattr(e, "orig", None), e.__cause__, e.__context__)
            if isinstance(c, BaseException)
        )
    return seen


def store_reason(exc: BaseException) -> str | None:
    """The reason (a key of ``_STORE_FAILURES``) for a known failure of the store behind
    ``exc``, or None."""
    causes = _causes(exc)
    for e in causes:
        state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(state, str):
            reason = _SQLSTATES.get(state) or _SQLSTATES.get(state[:2])
            if reason:
                return reason
        name = getattr(e, "sqlite_errorname", None)
        if isinstance(name, str):
            for prefix, reason in _SQLITE_NAMES:
                if name.startswith(prefix):
                    return reason
    for e in causes:
        if isinstance(e, sa_exc.DBAPIError | sa_exc.StatementError) or type(
            e
        ).__module__.startswith(("sqlite3", "aiosqlite")):
            text = str(getattr(e, "orig", None) or e).lower()
            for fragment, reason in _SQLITE_TEXTS:
                if fragment in text:
                    return reason
    for e in causes:
        if isinstance(e, sa_exc.TimeoutError):  # no pooled connection came free in time
            return "STORE_BUSY"
        if (
            isinstance(e, sa_exc.DisconnectionError | ConnectionError)
            or (isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated)
            or _is_closed_connection(e)
        ):
            return "STORE_UNAVAILABLE"
    return None


def _is_closed_connection(exc: BaseException) -> bool:
    """asyncpg's InterfaceError for a closed connection (its subclasses, such as DataError
    for a value out of range, are the caller's or our own mistakes, not the store's), and its
    InternalClientError for a connection whose server process was terminated mid-protocol
    ("another operation is in progress")."""
    cls = type(exc)
    if not cls.__module__.startswith("asyncpg"):
        return False
    text = str(exc).lower()
    if cls.__name__ == "InternalClientError":
        return "in progress" in text
    return cls.__name__ == "InterfaceError" and "connection" in text


def store_failure(exc: BaseException, what: str = "the call") -> TracklineError | None:
    """The error for a known failure of the store behind ``exc`` (see ``_STORE_FAILURES``), or
    None. Logged at warning level under a fresh error id with the driver's first line."""
    reason = store_reason(exc)
    if reason is None:
        return None
    error_id = uuid.uuid4().hex[:12]
    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
    log.warning(
        "error id %s: %s failed: %s (%s: %s)",
        error_id,
        what,
        reason,
        type(exc).__name__,
        first[:300],
    )
    cls, message = _STORE_FAILURES[reason]
    return cls(reason, f"{message} (error id {error_id})")


def grpc_status(err: TracklineError) -> grpc.Status:
    """``err`` as the status object ``context.abort_with_status`` takes."""
    return rpc_status.to_status(to_status(err))


def _clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_status(err: TracklineError) -> status_pb2.Status:
    """Builds the google.rpc.Status carried in the trailers of a failed call."""
    details = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN))
    details.append(info)
    violations = err.violations()
    if violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_clip(field), description=_clip(description)
                    )
                    for field, description in violations
                ]
            )
        )
        details.append(bad)
    if isinstance(err, ResourceExhausted) and err.retry_after is not None:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromTimedelta(dt.timedelta(seconds=err.retry_after))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return status_pb2.Status(code=err.code, message=_clip(err.message), details=details)
