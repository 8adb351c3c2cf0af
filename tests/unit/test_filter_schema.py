"""A new searchable entity is a schema and nothing more: "widgets", defined here over tables of
their own, are filtered and sorted through the generic parser and compiler of
trackline_server.search, and a schema that contradicts itself is refused when built."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
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
    DecimalId,
    EntitySchema,
    Enum,
    Examples,
    FilterError,
    Int64,
    KeyKind,
    Number,
    Text,
    apply_order,
    filter_clause,
    parse_filter,
    parse_order_by,
    to_text,
)

metadata = MetaData()
widgets = Table(
    "widgets",
    metadata,
    Column("widget_id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
    Column("size", Float),  # NULL stores NaN
    Column("colour", Integer, nullable=False),
    Column("made", BigInteger),
)
widget_tags = Table(
    "widget_tags",
    metadata,
    Column("widget_id", Integer, ForeignKey("widgets.widget_id"), primary_key=True),
    Column("key", String(50), primary_key=True),
    Column("value", String(50), nullable=False),
)
COLOUR = Enum("colour", {"RED": 10, "GREEN": 20, "BLUE": 30})
WIDGET_TAGS = KeyKind("tag", Text(), widget_tags, owner="widget_id", aliases=("label",))


def widget_schema(**changes: Any) -> EntitySchema:
    """The widget schema, with ``changes`` to its fields."""
    fields: dict[str, Any] = dict(
        name="widget",
        id_column=widgets.c.widget_id,
        attributes=(
            Attribute("name", Text(), widgets.c.name, aliases=("title",)),
            Attribute("size", Number(), widgets.c.size),
            Attribute("colour", COLOUR, widgets.c.colour, aliases=("color",)),
            Attribute("made", Int64(), widgets.c.made, nullable=True),
        ),
        examples=Examples("size > 2", "size or tags.shop", "tags"),
        kinds=(WIDGET_TAGS,),
        default_order=(("name", False),),
    )
    return EntitySchema(**(fields | changes))


WIDGETS = widget_schema()

#   name   size  colour  made  tags
ROWS = [
    ("bolt", 1.0, "RED", 100, {"shop": "north", "grade": "a"}),
    ("cog", 2.5, "GREEN", None, {"shop": "south"}),
    ("gear", 4.0, "BLUE", 300, {"shop": "north"}),
    ("nut", math.nan, "RED", 50, {}),
]


@pytest.fixture(scope="module")
def conn() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as connection:
        for i, (name, size, colour, made, tags) in enumerate(ROWS, 1):
            stored_size = None if math.isnan(size) else size
            connection.execute(
                insert(widgets).values(
                    widget_id=i,
                    name=name,
                    size=stored_size,
                    colour=COLOUR.stored(colour),
                    made=made,
                )
            )
            for key, value in tags.items():
                connection.execute(insert(widget_tags).values(widget_id=i, key=key, value=value))
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def search(conn: Connection, text: str, order_by: Sequence[str] = ()) -> list[str]:
    """The names of the widgets ``text`` matches, in the order ``order_by`` asks for."""
    expr = parse_filter(text, WIDGETS)
    query = select(widgets.c.name)
    if expr is not None:
        query = query.where(filter_clause(WIDGETS, expr, "sqlite"))
    query = apply_order(WIDGETS, query, parse_order_by(order_by, WIDGETS))
    return list(conn.scalars(query))


class TestFilters:
    @pytest.mark.parametrize(
        ("text", "names"),
        [
            ("", ["bolt", "cog", "gear", "nut"]),
            ("colour = 'red'", ["bolt", "nut"]),
            ("attributes.color IN ('Green', \"BLUE\")", ["cog", "gear"]),
            ("colour != 'RED'", ["cog", "gear"]),
            ("size > 2", ["cog", "gear"]),
            ("size = NaN", ["nut"]),
            ("size != 1", ["cog", "gear", "nut"]),
            ("size IN (1, NaN)", ["bolt", "nut"]),
            ("made IS NULL", ["cog"]),
            ("made >= 100", ["bolt", "gear"]),
            ("title LIKE '%o%'", ["bolt", "cog"]),
            ("tags.shop = 'north'", ["bolt", "gear"]),
            ("label.grade IS NULL", ["cog", "gear", "nut"]),
            ("tags.shop != 'north'", ["cog"]),
            ("(colour = 'red' OR tags.shop = 'south') AND size < 3", ["bolt", "cog"]),
        ],
    )
    def test_matches(self, conn: Connection, text: str, names: list[str]) -> None:
        assert search(conn, text) == names

    def test_deep_filters_take_the_sqlite_shape(self, conn: Connection) -> None:
        text = " OR ".join(["(" * 20 + "tags.shop = 'south'" + ")" * 20] * 100)
        assert search(conn, text) == ["cog"]


class TestOrder:
    @pytest.mark.parametrize(
        ("order_by", "names"),
        [
            ([], ["bolt", "cog", "gear", "nut"]),
            (["size DESC"], ["gear", "cog", "bolt", "nut"]),
            (["size"], ["bolt", "cog", "gear", "nut"]),
            (["made DESC"], ["gear", "bolt", "nut", "cog"]),
            (["colour DESC", "name DESC"], ["gear", "cog", "nut", "bolt"]),
            (["tags.shop", "name DESC"], ["gear", "bolt", "cog", "nut"]),
        ],
    )
    def test_sorts(self, conn: Connection, order_by: list[str], names: list[str]) -> None:
        assert search(conn, "", order_by) == names


class TestMessagesComeFromTheSchema:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("colour = 'pink'", "unknown colour 'pink'; expected one of RED, GREEN, BLUE"),
            ("colour = pink", "expected a colour after '=' but found 'pink'; quote it: 'pink'"),
            (
                "colour LIKE 'r%'",
                "LIKE is not supported for colour; expected one of =, !=, IN, NOT IN",
            ),
            ("made = 1.5", "made values are integers but found '1.5'"),
            ("name IS NULL", "IS NULL is not supported for name; expected one of =, !="),
            ("tags.shop = 1", "tag values are strings; quote the value: '1'"),
            ("size > 2 AND", "expected a comparison such as size > 2 after 'AND'"),
            ("`x` = 1", "a quoted key needs a prefix, e.g. tags.`x`; expected tags.<key>, attrib"),
            (
                "metrics.loss < 1",
                "unknown prefix 'metrics.'; expected tags.<key>, attributes.<name> or one of "
                "name, size, colour, made",
            ),
            (
                "attributes.weight = 1",
                "unknown widget attribute 'weight'; expected one of name, size, colour, made",
            ),
        ],
    )
    def test_filter_errors(self, text: str, message: str) -> None:
        with pytest.raises(FilterError) as info:
            parse_filter(text, WIDGETS)
        assert info.value.message.startswith(message), info.value.message

    def test_order_by_errors(self) -> None:
        with pytest.raises(FilterError) as info:
            parse_order_by([""], WIDGETS)
        assert info.value.message == "order_by[0]: expected an identifier such as size or tags.shop"

    def test_kinds_of_other_entities_explain_themselves(self) -> None:
        crates = Table("crates", MetaData(), Column("crate_id", Integer, primary_key=True))
        schema = EntitySchema(
            name="crate",
            id_column=crates.c.crate_id,
            attributes=(Attribute("crate_id", Text(), crates.c.crate_id),),
            examples=Examples("crate_id = 'c'", "crate_id", "attributes"),
            other_kinds=(WIDGET_TAGS,),
        )
        with pytest.raises(FilterError) as info:
            parse_filter("label.x = 'y'", schema)
        assert info.value.message == (
            "tags are not available when searching crates; expected attributes.<name>"
        )

    def test_trees_render_back_to_text_of_the_schema(self) -> None:
        expr = parse_filter("color = 'blue' AND (label.shop IS NULL OR size > 1)", WIDGETS)
        assert expr is not None
        text = to_text(expr)
        assert text == (
            "attributes.`colour` = 'BLUE' AND (tags.`shop` IS NULL OR attributes.`size` > 1)"
        )
        reparsed = parse_filter(text, WIDGETS)
        assert reparsed is not None and to_text(reparsed) == text


other_table = Table("other", MetaData(), Column("x", Integer, primary_key=True))


@pytest.mark.parametrize(
    "broken",
    [
        lambda: widget_schema(default_order=(("title", False),)),
        lambda: widget_schema(default_order=(("weight", False),)),
        lambda: widget_schema(attribute_aliases=("tags",)),
        lambda: widget_schema(attribute_aliases=("Attr",)),
        lambda: widget_schema(
            attributes=(Attribute("name", Text(), widgets.c.name, aliases=("name",)),)
        ),
        lambda: widget_schema(attributes=(Attribute("x", Text(), other_table.c.x),)),
        lambda: widget_schema(kinds=(KeyKind("attribute", Text(), widget_tags, "widget_id"),)),
        lambda: widget_schema(kinds=(KeyKind("tag", Text(), widget_tags, "owner_id"),)),
        lambda: widget_schema(kinds=(WIDGET_TAGS, WIDGET_TAGS)),
        lambda: widget_schema(other_kinds=(WIDGET_TAGS,)),
        lambda: Enum("colour", {"red": 1}),
        lambda: Enum("colour", {}),
    ],
)
def test_inconsistent_schemas_are_programming_errors(broken: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        broken()


def test_decimal_ids_beyond_the_column_name_no_row() -> None:
    ids = DecimalId("a crate ID", maximum=999)
    assert (ids.stored("999"), ids.stored("1000"), ids.stored("9" * 5000)) == (999, None, None)
