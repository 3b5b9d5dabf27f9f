"""Filter values typed by their column before any SQL runs: what is accepted (and the
text PostgreSQL will read), and what is refused, with the message users see."""

from __future__ import annotations

import pytest

from flows.control import errors
from flows.control.registry import ColumnType, Dataset, Registry
from flows.datapath.request import ExportRequest, plan_export
from tests.flows.helpers import limits

TYPES = {
    "code": "character(3)",
    "name": "character varying(3)",
    "small": "smallint",
    "n": "integer",
    "num": "numeric",
    "money": "numeric(4,2)",
    "whole": "numeric(5)",
    "frac": "numeric(2,2)",
    "tiny": "numeric(3,3)",
    "ratio": "real",
    "dbl": "double precision",
    "flag": "boolean",
    "at": "time without time zone",
    "bits": "bit varying(4)",
    "doc": "json",
    "ts": "timestamp with time zone",
    "naive": "timestamp without time zone",
    "day": "date",
    "id": "uuid",
}
BASES = {"money": "numeric", "whole": "numeric", "frac": "numeric", "tiny": "numeric",
         "bits": "bit varying", "code": "character", "name": "character varying"}  # fmt: skip
REGISTRY = Registry(
    modules={
        "typed": Dataset(
            name="typed",
            table="typed",
            key="code",
            permission="p",
            columns=dict.fromkeys(TYPES),
            types={c: ColumnType(pg_type=t, base_type=BASES.get(c, "")) for c, t in TYPES.items()},
        )
    }
)


def terms(column: str, op: str, value, timezone: str = "UTC") -> list[tuple[str, list[str]]]:
    """(op, values) of the conditions a filter becomes."""
    req = ExportRequest(
        module="typed",
        timezone=timezone,
        filters=[{"column": column, "op": op, "value": value}],
    )
    return [(c.op, c.values) for c in plan_export(req, REGISTRY, limits()).conditions]


def refusal(column: str, op: str, value, timezone: str = "UTC") -> str:
    with pytest.raises(errors.InvalidFilterValue) as info:
        terms(column, op, value, timezone)
    return info.value.message


def test_numbers_are_read_as_postgresql_reads_them():
    assert terms("n", "eq", " 12 ") == [("eq", ["12"])]
    assert terms("small", "lte", "32767") == [("lte", ["32767"])]
    assert terms("small", "gte", "-32768") == [("gte", ["-32768"])]
    assert refusal("n", "eq", "1e3") == "value '1e3' for column 'n' is not a valid integer"
    assert refusal("small", "eq", "32768") == (
        "value '32768' for column 'small' is not a valid smallint: it is outside -32768..32767"
    )


@pytest.mark.parametrize(
    ("column", "value"),
    [("money", "99.99"), ("money", "1.25"), ("money", "-0.5"), ("whole", "12"),
     ("whole", "99999"), ("frac", "0.25"), ("tiny", "0.999"), ("money", "NaN"),
     ("num", "Infinity"), ("num", "-infinity"), ("num", "1.23456789")],
)  # fmt: skip
def test_numerics_within_precision_and_scale_are_accepted(column: str, value: str):
    assert terms(column, "eq", value) == [("eq", [value])]


@pytest.mark.parametrize(
    ("column", "value", "why"),
    [
        ("whole", "1.5", "it has more than 0 decimal places"),
        ("money", "1.255", "it has more than 2 decimal places"),
        ("money", "100", "it has more than 2 digits before the point"),
        ("tiny", "1", "it has more than 0 digits before the point"),
        ("tiny", "1.5", "it has more than 0 digits before the point"),
        ("money", "Infinity", "infinity does not fit a numeric with a precision"),
    ],
)
def test_numerics_postgresql_would_round_or_refuse_are_refused(column, value, why):
    assert refusal(column, "eq", value) == (
        f"value {value!r} for column {column!r} is not a valid {TYPES[column]}: {why}"
    )


def test_a_malformed_number_is_not_a_valid_number():
    assert (
        refusal("money", "eq", "1,5")
        == "value '1,5' for column 'money' is not a valid numeric(4,2)"
    )
    assert refusal("ratio", "eq", "abc") == "value 'abc' for column 'ratio' is not a valid real"


@pytest.mark.parametrize(
    ("column", "value"),
    [("ratio", "1.5"), ("ratio", "0"), ("ratio", "3.4028234663852886e38"), ("ratio", "1.5e-45"),
     ("ratio", "Infinity"), ("ratio", "-inf"), ("ratio", "NaN"), ("dbl", "1e300"),
     ("dbl", "1e-300"), ("dbl", "0.0")],
)  # fmt: skip
def test_floats_in_range_are_accepted(column: str, value: str):
    assert terms(column, "eq", value) == [("eq", [value])]


@pytest.mark.parametrize(
    ("column", "value"),
    [("ratio", "1e39"), ("ratio", "-3.5e38"), ("ratio", "1e-50"), ("ratio", "5e-46"),
     ("dbl", "1e309"), ("dbl", "1e-400")],
)  # fmt: skip
def test_floats_out_of_range_are_refused(column: str, value: str):
    assert refusal(column, "eq", value) == (
        f"value {value!r} for column {column!r} is not a valid {TYPES[column]}: it is out of range"
    )


def test_booleans_and_times_are_normalised():
    assert terms("flag", "eq", True) == [("eq", ["true"])]
    assert terms("flag", "eq", False) == [("eq", ["false"])]
    assert terms("flag", "eq", "Yes") == [("eq", ["true"])]
    assert terms("flag", "eq", "off") == [("eq", ["false"])]
    assert refusal("flag", "eq", "maybe") == (
        "value 'maybe' for column 'flag' is not a valid boolean: use true or false"
    )
    assert terms("at", "gte", "10:30") == [("gte", ["10:30:00"])]
    assert (
        refusal("at", "eq", "25:61")
        == "value '25:61' for column 'at' is not a valid time without time zone"
    )


def test_sized_text_and_bits_must_fit_without_being_cut():
    assert terms("code", "eq", "abc  ") == [("eq", ["abc  "])]
    assert refusal("code", "eq", "ABCX").endswith(
        "is not a valid character(3): it is longer than 3 characters"
    )
    assert refusal("code", "eq", "abc\t").endswith("it is longer than 3 characters")
    assert refusal("name", "eq", "abc ").endswith(
        "is not a valid character varying(3): it is longer than 3 characters"
    )
    assert terms("bits", "eq", "1010") == [("eq", ["1010"])]
    assert refusal("bits", "eq", "10101").endswith("it is longer than 4 characters")
    assert (
        refusal("bits", "eq", "10a")
        == "value '10a' for column 'bits' is not a valid bit varying(4)"
    )


def test_values_that_are_not_single_or_not_comparable_are_refused():
    assert refusal("n", "eq", [1, 2]) == (
        "value [1, 2] for column 'n' is not a valid integer: give a single value"
    )
    assert refusal("doc", "eq", "{}") == (
        "value '{}' for column 'doc' is not a valid json: this type can only be filtered with contains, "
        "starts_with, is_null or not_null"
    )
    assert refusal("id", "eq", "not-a-uuid") == (
        "value 'not-a-uuid' for column 'id' is not a valid uuid"
    )


def test_infinite_dates_and_timestamps_are_accepted():
    assert terms("ts", "gte", "Infinity") == [("gte", ["infinity"])]
    assert terms("naive", "lte", "-infinity") == [("lte", ["-infinity"])]
    assert terms("day", "eq", "-Infinity") == [("eq", ["-infinity"])]


def test_a_date_on_a_timestamp_means_its_whole_day_in_the_zone():
    berlin = "Europe/Berlin"
    assert terms("ts", "gte", "2024-07-01", berlin) == [("gte", ["2024-07-01T00:00:00+02:00"])]
    assert terms("ts", "lte", "2024-07-01", berlin) == [("lt", ["2024-07-02T00:00:00+02:00"])]
    assert terms("naive", "eq", "2024-01-01", berlin) == [
        ("gte", ["2024-01-01T00:00:00"]),
        ("lt", ["2024-01-02T00:00:00"]),
    ]
    assert refusal("ts", "in", ["2024-07-01"], berlin).endswith(
        "is not a valid timestamp with time zone: an `in` list on a timestamp takes "
        "date-times; use eq for a whole day"
    )
    assert refusal("day", "eq", "2024-07-01T10:00") == (
        "value '2024-07-01T10:00' for column 'day' is not a valid date: give a date (YYYY-MM-DD)"
    )


def test_a_date_time_without_offset_is_in_the_request_zone():
    berlin = "Europe/Berlin"
    assert terms("ts", "eq", "2024-07-01T10:00", berlin) == [("eq", ["2024-07-01T10:00:00+02:00"])]
    assert terms("ts", "in", ["2024-07-01T10:00"], berlin) == [
        ("in", ["2024-07-01T10:00:00+02:00"])
    ]
    assert terms("naive", "gte", "2024-07-01T00:00Z", berlin) == [("gte", ["2024-07-01T02:00:00"])]
    assert terms("naive", "in", ["2024-07-01T00:00Z"], berlin) == [("in", ["2024-07-01T02:00:00"])]


def test_a_real_that_rounds_to_zero_at_the_boundary_is_refused():
    assert refusal("ratio", "eq", "7.006492321624085e-46").endswith("it is out of range")


DATED = Registry(
    modules={
        "daily": Dataset(
            name="daily",
            table="daily",
            key="id",
            date_column="day",
            permission="p",
            columns={"id": None, "day": None},
            types={"id": ColumnType(pg_type="integer"), "day": ColumnType(pg_type="date")},
        )
    }
)


def date_range(**bounds) -> list[tuple[str, str]]:
    req = ExportRequest(module="daily", timezone="Europe/Berlin", **bounds)
    return [(c.op, c.values[0]) for c in plan_export(req, DATED, limits()).conditions]


def test_a_date_range_on_a_date_column_keeps_every_day_it_touches():
    # `to` is exclusive: a day that began before it counts, a day starting at it does not.
    assert date_range(**{"from": "2024-07-01T10:00", "to": "2024-07-03T10:00"}) == [
        ("gte", "2024-07-01"),
        ("lt", "2024-07-04"),
    ]
    assert date_range(**{"to": "2024-07-03T00:00"}) == [("lt", "2024-07-03")]
    assert date_range(**{"from": "2024-07-01", "to": "2024-07-03"}) == [
        ("gte", "2024-07-01"),
        ("lt", "2024-07-04"),
    ]
    # An instant with an offset is its wall-clock day in the request's zone.
    assert date_range(**{"to": "2024-07-02T23:30Z"}) == [("lt", "2024-07-04")]
