"""The generic notions MLflow's spellings brought to trackline_server.search, on an entity of
their own: related rows reached through a join (``parts.name``) and key aliases (a tag key
standing for an attribute or for another key), filtered and sorted on SQLite in memory; and
the schemas that contradict them, refused when built."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
)
from trackline_server.search import (
    Attribute,
    EntitySchema,
    Examples,
    FilterError,
    KeyAlias,
    KeyKind,
    Related,
    RelatedField,
    Text,
    apply_order,
    filter_clause,
    parse_filter,
    parse_order_by,
)

metadata = MetaData()
boxes = Table(
    "boxes",
    metadata,
    Column("box_id", Integer, primary_key=True),
    Column("label", String(50), nullable=False),
)
box_tags = Table(
    "box_tags",
    metadata,
    Column("box_id", Integer, ForeignKey("boxes.box_id"), primary_key=True),
    Column("key", String(50), primary_key=True),
    Column("value", String(50), nullable=False),
)
parts = Table(
    "parts",
    metadata,
    Column("part_id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
)
box_parts = Table(
    "box_parts",
    metadata,
    Column("box_id", Integer, ForeignKey("boxes.box_id"), primary_key=True),
    Column("part_id", Integer, ForeignKey("parts.part_id"), primary_key=True),
    Column("role", String(50), nullable=False),
)
TAGS = KeyKind("tag", Text(), box_tags, owner="box_id")
PARTS = Related(
    "part",
    box_parts.join(parts, box_parts.c.part_id == parts.c.part_id),
    box_parts.c.box_id,
    (
        RelatedField("name", Text(), parts.c.name),
        RelatedField("role", Text(), box_parts.c.role),
    ),
    aliases=("part",),
)


def box_schema(**changes: Any) -> EntitySchema:
    fields: dict[str, Any] = dict(
        name="box",
        id_column=boxes.c.box_id,
        attributes=(Attribute("label", Text(), boxes.c.label),),
        examples=Examples("label = 'a'", "label", "tags"),
        kinds=(TAGS,),
        related=(PARTS,),
        key_aliases=(
            KeyAlias("tag", "old.label", "attribute", "label"),
            KeyAlias("tag", "old.shop", "tag", "shop"),
        ),
        default_order=(("label", False),),
    )
    return EntitySchema(**(fields | changes))


BOXES = box_schema()

#   label  tags              parts (name, role)
ROWS: list[tuple[str, dict[str, str], list[tuple[str, str]]]] = [
    ("a", {"shop": "north"}, [("bolt", "lid"), ("nut", "base")]),
    ("b", {"shop": "south", "old.shop": "west"}, [("bolt", "base")]),
    ("c", {}, [("cog", "lid")]),
    ("d", {"old.label": "z"}, []),
]


@pytest.fixture(scope="module")
def conn() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    part_ids: dict[str, int] = {}
    with engine.begin() as connection:
        for box_id, (label, tags, box_parts_of) in enumerate(ROWS, 1):
            connection.execute(insert(boxes).values(box_id=box_id, label=label))
            for key, value in tags.items():
                connection.execute(insert(box_tags).values(box_id=box_id, key=key, value=value))
            for name, role in box_parts_of:
                if name not in part_ids:
                    part_ids[name] = len(part_ids) + 1
                    connection.execute(insert(parts).values(part_id=part_ids[name], name=name))
                row = {"box_id": box_id, "part_id": part_ids[name], "role": role}
                connection.execute(insert(box_parts).values(row))
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def search(conn: Connection, text: str, order_by: Sequence[str] = ()) -> list[str]:
    expr = parse_filter(text, BOXES)
    query = select(boxes.c.label)
    if expr is not None:
        query = query.where(filter_clause(BOXES, expr, "sqlite"))
    return list(conn.scalars(apply_order(BOXES, query, parse_order_by(order_by, BOXES))))


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("parts.name = 'bolt'", ["a", "b"]),
        ("part.name IN ('nut', 'cog')", ["a", "c"]),
        ("parts.name != 'bolt'", ["a", "c"]),  # some part is not a bolt
        ("parts.name NOT IN ('bolt')", ["a", "c"]),
        ("parts.role = 'lid'", ["a", "c"]),
        ("parts.name = 'bolt' AND parts.role = 'base'", ["a", "b"]),  # each: some part
        ("parts.name LIKE 'b%' OR tags.shop = 'south'", ["a", "b"]),
        ("parts.name ILIKE 'COG'", ["c"]),
        ("parts.name = 'washer'", []),
        # key aliases
        ("tags.old.label = 'a'", ["a"]),  # the attribute, not the tag d has
        ("tags.`old.label` LIKE '%'", ["a", "b", "c", "d"]),
        ("tags.old.shop = 'south'", ["b"]),  # the tag shop, not the tag old.shop
        ("tags.old.shop IS NULL", ["c", "d"]),
    ],
)
def test_filters(conn: Connection, text: str, labels: list[str]) -> None:
    assert search(conn, text) == labels


def test_aliases_sort_on_their_target(conn: Connection) -> None:
    assert search(conn, "", ["tags.old.label DESC"]) == ["d", "c", "b", "a"]
    assert search(conn, "", ["tags.old.shop DESC"]) == ["b", "a", "c", "d"]


def test_related_rows_are_not_sort_keys() -> None:
    with pytest.raises(FilterError) as info:
        parse_order_by(["label", "parts.role DESC"], BOXES)
    assert info.value.message == "order_by[1]: cannot sort on parts.role: a box may have many parts"


def test_unknown_prefixes_suggest_the_related_fields() -> None:
    with pytest.raises(FilterError) as info:
        parse_filter("bits.name = 'x'", BOXES)
    assert info.value.message == (
        "unknown prefix 'bits.'; expected tags.<key>, parts.name, parts.role, attributes.<name>"
        " or one of label"
    )


@pytest.mark.parametrize(
    "broken",
    [
        lambda: box_schema(key_aliases=(KeyAlias("param", "x", "attribute", "label"),)),
        lambda: box_schema(key_aliases=(KeyAlias("tag", "x", "attribute", "weight"),)),
        lambda: box_schema(key_aliases=(KeyAlias("tag", "x", "metric", "y"),)),
        lambda: box_schema(
            key_aliases=(
                KeyAlias("tag", "x", "attribute", "label"),
                KeyAlias("tag", "x", "tag", "y"),
            )
        ),
        lambda: box_schema(
            key_aliases=(KeyAlias("tag", "x", "tag", "y"), KeyAlias("tag", "y", "tag", "z"))
        ),
        lambda: box_schema(related=(PARTS, PARTS)),
        lambda: box_schema(related=(Related("tag", boxes, boxes.c.box_id, PARTS.fields),)),
        lambda: box_schema(related=(Related("attribute", boxes, boxes.c.box_id, PARTS.fields),)),
        lambda: Related("part", parts, parts.c.part_id, ()),
        lambda: Related(
            "part", parts, parts.c.part_id, (RelatedField("Name", Text(), parts.c.name),)
        ),
        lambda: Related(
            "part",
            parts,
            parts.c.part_id,
            (
                RelatedField("name", Text(), parts.c.name),
                RelatedField("name", Text(), parts.c.name),
            ),
        ),
    ],
)
def test_inconsistent_schemas_are_programming_errors(broken: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        broken()
