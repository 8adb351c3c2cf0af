"""The error-reason catalogue (protos/trackline/v1/errors.proto) against the server's code:
every reason the server raises is listed with the status code it is raised with, and every
listed reason is raised somewhere, so the catalogue other languages read cannot drift."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest
from trackline.v1 import errors_pb2

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "server" / "trackline_server"
PROTO = ROOT / "protos" / "trackline" / "v1" / "errors.proto"
# The status code each domain error class carries (errors.py).
CODES = {
    "NotFound": "NOT_FOUND",
    "AlreadyExists": "ALREADY_EXISTS",
    "InvalidArgument": "INVALID_ARGUMENT",
    "FilterError": "INVALID_ARGUMENT",
    "FailedPrecondition": "FAILED_PRECONDITION",
    "OutOfRange": "OUT_OF_RANGE",
    "require_active": "FAILED_PRECONDITION",
    "inactive": "FAILED_PRECONDITION",
    "Unauthenticated": "UNAUTHENTICATED",
    "PermissionDenied": "PERMISSION_DENIED",
    "Aborted": "ABORTED",
    "Unavailable": "UNAVAILABLE",
    "ResourceExhausted": "RESOURCE_EXHAUSTED",
    "Internal": "INTERNAL",
}
# Reasons of stream rejections (no status code of their own: the catalogue gives one).
REJECTIONS = {"Rejection"}
RAISED_BY_CLIENTS = {"SERVER_UNREACHABLE", "INVALID_RANK", "INVALID_POINT", "CLIENT_ERROR"}
REASON = re.compile(r"[A-Z][A-Z0-9_]+\Z")


def catalogue() -> dict[str, str]:
    """Reason -> the status code its comment starts with."""
    found: dict[str, str] = {}
    comment: list[str] = []
    for line in PROTO.read_text().splitlines():
        line = line.strip()
        if line.startswith("//"):
            comment.append(line[2:].strip())
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*) = \d+;", line)
        if match and match.group(1) != "ERROR_REASON_UNSPECIFIED":
            code = comment[0].split(".")[0] if comment else ""
            found[match.group(1)] = code
        comment = []
    return found


def raised() -> dict[str, set[str]]:
    """Reason -> the status codes the server's code raises it with ("" for rejections)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in SERVER.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                args = [a for a in node.args if isinstance(a, ast.Constant)]
                if name in ("require_active", "inactive") and len(node.args) > 1:
                    args = [a for a in node.args[1:2] if isinstance(a, ast.Constant)]
                if name in CODES or name in REJECTIONS:
                    for arg in args[:1]:
                        if isinstance(arg.value, str) and REASON.match(arg.value):
                            found[arg.value].add(CODES.get(name, ""))
            if isinstance(node, ast.Dict) and path.name == "errors.py":
                # _STORE_FAILURES: reason -> (error class, message)
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and isinstance(value, ast.Tuple)
                        and isinstance(value.elts[0], ast.Name)
                    ):
                        found[str(key.value)].add(CODES[value.elts[0].id])
    return found


def test_the_catalogue_is_the_generated_enum() -> None:
    names = set(errors_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
    assert names == set(catalogue())


def test_every_listed_reason_starts_with_a_status_code() -> None:
    for reason, code in catalogue().items():
        assert code in set(CODES.values()), f"{reason}: its comment starts with {code!r}"


@pytest.mark.parametrize("reason", sorted(raised()))
def test_every_raised_reason_is_listed_with_its_code(reason: str) -> None:
    listed = catalogue()
    assert reason in listed, f"{reason} is raised but not in errors.proto"
    codes = raised()[reason] - {""}
    assert codes <= {listed[reason]}, f"{reason} is raised as {codes}, listed as {listed[reason]}"


def test_every_listed_reason_is_raised() -> None:
    assert set(catalogue()) - set(raised()) - RAISED_BY_CLIENTS == set()
