"""SearchRegisteredModels and SearchModelVersions: filter, order, page, then load the page's
rows in bulk. Pages hold at most ``page_size`` rows; a token continues right after the last."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, select
from trackline.v1 import registry_pb2 as rpb

from .. import page_tokens
from ..auth.principal import EVERYTHING, Scope
from ..models import model_versions, registered_models
from ..search import (
    EntitySchema,
    apply_order,
    filter_clause,
    next_page_token,
    page_offset,
    parse_request,
    rows_per_page,
)
from ..sql import Reader, rows
from . import models, versions
from .search_schema import MODEL_VERSIONS, REGISTERED_MODELS


async def search_models(
    reader: Reader,
    filter_text: str,
    order_by: Sequence[str],
    page_size: int,
    token: str,
    scope: Scope = EVERYTHING,
) -> tuple[list[rpb.RegisteredModel], str]:
    """One page of matching models in ``scope`` and the token of the next page ("" at the
    end)."""
    in_scope = scope.clause(registered_models.c.name)
    ids, next_token = await _page(
        reader, REGISTERED_MODELS, "registered_models", filter_text, order_by, page_size, token,
        in_scope,
    )  # fmt: skip
    return await models.load(reader, ids), next_token


async def search_versions(
    reader: Reader,
    filter_text: str,
    order_by: Sequence[str],
    page_size: int,
    token: str,
    scope: Scope = EVERYTHING,
) -> tuple[list[rpb.ModelVersion], str]:
    """One page of matching versions of models in ``scope`` and the token of the next page
    ("" at the end)."""
    in_scope = scope.clause(model_versions.c.name)
    ids, next_token = await _page(
        reader, MODEL_VERSIONS, "model_versions", filter_text, order_by, page_size, token,
        in_scope,
    )  # fmt: skip
    return await versions.load(reader, ids), next_token


async def _page(
    reader: Reader,
    schema: EntitySchema,
    what: str,
    filter_text: str,
    order_by: Sequence[str],
    page_size: int,
    token: str,
    in_scope: ColumnElement[bool] | None,
) -> tuple[list[int], str]:
    """The ids of one page of ``schema``'s entities (those ``in_scope``, if given) and the
    next page's token."""
    expr, keys = parse_request(filter_text, order_by, schema)
    size = rows_per_page(page_size)
    fingerprint = page_tokens.fingerprint(what, filter_text, list(order_by))
    offset = page_offset(token, fingerprint, f"a search of {what}", "filter and order_by")
    query = select(schema.id_column)
    if expr is not None:
        query = query.where(filter_clause(schema, expr, reader.dialect.name))
    if in_scope is not None:
        query = query.where(in_scope)
    query = apply_order(schema, query, keys).offset(offset).limit(size + 1)
    ids = [int(row[0]) for row in await rows(reader, query, aside=True)]
    return ids[:size], next_page_token(offset + size, len(ids) > size, fingerprint)
