"""models:/ URIs, resolved by the server so that every language gets one answer:

- ``models:/<name>/<version>``: that version;
- ``models:/<name>@<alias>``: the version the alias points at;
- ``models:/<name>/latest``: the highest-numbered READY version;
- ``models:/<name>/<stage>``: the highest-numbered version in the stage (None, Staging,
  Production, Archived; in any case).

Model names hold neither '/' nor '@' (``models.check_model_name``), so the form is read from
the first of them after the prefix.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, func, select

from .. import limits
from ..errors import InvalidArgument, NotFound, shown
from ..models import model_versions
from ..sql import Query, Reader, first
from . import aliases, models, stages, versions

PREFIX = "models:/"
_V = model_versions.c
_LATEST_READY = Query(
    lambda _: select(func.max(_V.version)).where(
        and_(_V.model_id == bindparam("model_id"), _V.status == versions.READY)
    )
)
_LATEST_IN_STAGE = Query(
    lambda _: select(func.max(_V.version)).where(
        and_(_V.model_id == bindparam("model_id"), _V.stage == bindparam("stage"))
    )
)


def _invalid(uri: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        "INVALID_MODEL_URI",
        f"{shown(uri)} {why}; expected models:/<name>/<version>, models:/<name>@<alias>,"
        " models:/<name>/latest or models:/<name>/<stage>",
        "uri",
    )


def parse(uri: str) -> tuple[str, str, str]:
    """(name, separator, rest) of a models:/ URI: separator '/' (a version, 'latest' or a
    stage follows) or '@' (an alias follows). INVALID_ARGUMENT INVALID_MODEL_URI otherwise."""
    if len(uri) > limits.MAX_MODEL_URI_LENGTH:
        raise _invalid(uri[:100], f"is longer than {limits.MAX_MODEL_URI_LENGTH} characters")
    if not uri.startswith(PREFIX):
        raise _invalid(uri, "does not start with models:/")
    body = uri[len(PREFIX) :]
    cut = min((i for i in (body.find("/"), body.find("@")) if i >= 0), default=-1)
    if cut <= 0 or cut == len(body) - 1:
        raise _invalid(uri, "names no model and version")
    name, separator, rest = body[:cut], body[cut], body[cut + 1 :]
    if "/" in rest or "@" in rest:
        raise _invalid(uri, "has more than one '/' or '@' after the name")
    return name, separator, rest


async def resolve(reader: Reader, uri: str) -> int:
    """The id of the version ``uri`` names; NOT_FOUND naming what is missing."""
    name, separator, rest = parse(uri)
    model_id = await models.model_id(reader, name, "uri")
    if separator == "@":
        return await aliases.version_of(reader, model_id, name, rest)
    if rest.isascii() and rest.isdigit():
        return (await versions.row(reader, model_id, name, int(rest))).version_id
    if rest.lower() == "latest":
        found = await first(reader, _LATEST_READY, {"model_id": model_id})
        what = "no READY version"
    elif rest.lower() in stages.BY_NAME:
        stage = stages.BY_NAME[rest.lower()]
        found = await first(reader, _LATEST_IN_STAGE, {"model_id": model_id, "stage": stage})
        what = f"no version in stage {rest}"
    else:
        raise _invalid(uri, f"ends in {shown(rest)}, which is no version, 'latest' nor a stage")
    if found is None or found[0] is None:
        raise NotFound(
            "MODEL_VERSION_NOT_FOUND", f"registered model {shown(name)} has {what}", "uri"
        )
    return (await versions.row(reader, model_id, name, int(found[0]))).version_id


def run_of_source(source: str) -> str:
    """The run id of a ``runs:/<run_id>/<path>`` source; "" for any other source."""
    if not source.startswith("runs:/"):
        return ""
    return source[len("runs:/") :].lstrip("/").split("/", 1)[0]
