"""Reads the rich error status (google.rpc.Status with ErrorInfo, BadRequest and RetryInfo)
from a failed call's trailers without depending on grpcio-status or googleapis-common-protos.

The messages are declared here, wire-compatible, in a private descriptor pool: the
client installs with grpcio and protobuf alone, and a process that also imports the official
google.rpc modules sees no duplicate registrations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

DETAILS_KEY = "grpc-status-details-bin"
_ERROR_INFO_URL = "type.googleapis.com/google.rpc.ErrorInfo"
_BAD_REQUEST_URL = "type.googleapis.com/google.rpc.BadRequest"
_RETRY_INFO_URL = "type.googleapis.com/google.rpc.RetryInfo"

_F = descriptor_pb2.FieldDescriptorProto


def _message(name: str, fields: list[tuple[str, int, int, int, str]]) -> Any:
    msg = descriptor_pb2.DescriptorProto(name=name)
    for fname, number, ftype, label, type_name in fields:
        f = msg.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name
    return msg


def _build() -> tuple[Any, Any, Any, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="trackline/_private/rpc_status.proto", package="trackline_private.rpc"
    )
    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    file.message_type.extend(
        [
            _message(
                "Any",
                [("type_url", 1, _F.TYPE_STRING, opt, ""), ("value", 2, _F.TYPE_BYTES, opt, "")],
            ),
            _message(
                "Status",
                [
                    ("code", 1, _F.TYPE_INT32, opt, ""),
                    ("message", 2, _F.TYPE_STRING, opt, ""),
                    ("details", 3, _F.TYPE_MESSAGE, rep, ".trackline_private.rpc.Any"),
                ],
            ),
            # ErrorInfo's metadata map (field 3) is skipped: unknown fields are ignored.
            _message(
                "ErrorInfo",
                [("reason", 1, _F.TYPE_STRING, opt, ""), ("domain", 2, _F.TYPE_STRING, opt, "")],
            ),
            _message(
                "FieldViolation",
                [
                    ("field", 1, _F.TYPE_STRING, opt, ""),
                    ("description", 2, _F.TYPE_STRING, opt, ""),
                ],
            ),
            _message(
                "BadRequest",
                [
                    (
                        "field_violations",
                        1,
                        _F.TYPE_MESSAGE,
                        rep,
                        ".trackline_private.rpc.FieldViolation",
                    )
                ],
            ),
            _message(
                "Duration",
                [("seconds", 1, _F.TYPE_INT64, opt, ""), ("nanos", 2, _F.TYPE_INT32, opt, "")],
            ),
            _message(
                "RetryInfo",
                [("retry_delay", 1, _F.TYPE_MESSAGE, opt, ".trackline_private.rpc.Duration")],
            ),
        ]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)

    def cls(name: str) -> Any:
        return message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"trackline_private.rpc.{name}")
        )

    return cls("Status"), cls("ErrorInfo"), cls("BadRequest"), cls("RetryInfo")


_Status, _ErrorInfo, _BadRequest, _RetryInfo = _build()


@dataclass
class RichStatus:
    """What a server said beyond the status code. ``violations`` are BadRequest's field
    violations in the server's order, as (field, description) pairs (a request with several
    problems gets one per problem); ``field_violations`` maps each field to its description,
    the descriptions of a field named more than once joined by "; ". ``retry_delay`` is how
    many seconds the server asks the caller to wait before trying again (RetryInfo), None when
    it asked nothing."""

    reason: str = ""
    domain: str = ""
    field_violations: dict[str, str] = field(default_factory=dict)
    retry_delay: float | None = None
    violations: list[tuple[str, str]] = field(default_factory=list)


def by_field(violations: list[tuple[str, str]]) -> dict[str, str]:
    """Field -> description, the descriptions of a repeated field joined by "; "."""
    out: dict[str, str] = {}
    for name, description in violations:
        out[name] = f"{out[name]}; {description}" if name in out else description
    return out


def parse(trailing_metadata: Any) -> RichStatus:
    """Extracts ErrorInfo, BadRequest and RetryInfo from trailers; absent or unreadable details
    give an empty RichStatus rather than an exception (the status code still tells what
    happened)."""
    out = RichStatus()
    for key, value in trailing_metadata or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = _Status.FromString(value)
            for detail in status.details:
                if detail.type_url == _ERROR_INFO_URL:
                    info = _ErrorInfo.FromString(detail.value)
                    out.reason, out.domain = info.reason, info.domain
                elif detail.type_url == _BAD_REQUEST_URL:
                    bad = _BadRequest.FromString(detail.value)
                    out.violations.extend((v.field, v.description) for v in bad.field_violations)
                elif detail.type_url == _RETRY_INFO_URL:
                    delay = _RetryInfo.FromString(detail.value).retry_delay
                    out.retry_delay = max(0.0, delay.seconds + delay.nanos / 1e9)
        except DecodeError:  # a malformed trailer from a foreign server; keep the plain status
            return RichStatus()
    out.field_violations = by_field(out.violations)
    return out
