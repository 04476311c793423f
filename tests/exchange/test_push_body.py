"""The fast reader of pushed batches takes only what the protocol models take, with the same values.

exchange.push_body reads a batch with msgspec, straight into types made from the resource's
fields, and leaves every body it does not take to the protocol models, whose refusals name the
field and the index. So the one thing that must never happen is the fast reader taking a body
that the protocol models refuse, or taking it with other values. These tests feed both readers
the same bodies, hand-picked edge cases and generated ones, and compare.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import msgspec
import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.errors import ApiError
from exchange.push_body import BatchReader, PushedBatch, check_rows, read, read_by_the_protocol_models
from gdx.fields import FieldType, RowSchema
from gdx.protocol import MAX_BATCH_CHANGES, ResourceSpec
from tests.support.aio import run
from tests.support.samples import batch, delete, person, population_entry, upsert

POPULATION = ResourceSpec.model_validate(population_entry("zjg-gaj.population")).row_schema()
# A second shape: an integer key of no particular kind, and a required number.
MEASUREMENTS = ResourceSpec.model_validate(
    {
        **population_entry("zjg-hbj.air"),
        "fields": [
            {"name": "station", "type": "integer", "nullable": False},
            {"name": "pm25", "type": "number", "nullable": False},
            {"name": "measured_on", "type": "date"},
            {"name": "measured_at", "type": "timestamp"},
            {"name": "calibrated", "type": "boolean"},
            {"name": "note", "type": "string"},
        ],
        "primary_key": "station",
        "key_kind": "plain",
    }
).row_schema()


def measurement(station: int, version: int = 1, **row: Any) -> dict[str, Any]:
    data = {"station": station, "pm25": 35.5, "measured_on": "2026-11-01", "measured_at": "2026-11-01T08:00:00Z"}
    return {
        "op": "upsert",
        "key": station,
        "row": {**data, **row},
        "source_version": version,
        "source_commit_time": "2026-11-01T08:00:00+08:00",
    }


def protocol_models_take(schema: RowSchema, body: bytes) -> PushedBatch | None:
    """What the push made of a body before the fast reader: the batch, or None if refused."""
    try:
        batch = read_by_the_protocol_models(body)
        run(check_rows(schema, batch))
    except (RequestValidationError, ApiError):
        return None
    return batch


def as_data(batch: PushedBatch) -> Any:
    """The batch as the push stores it: rows as the JSON text staged for PostgreSQL, with keys
    sorted (json, not orjson, reads it back: it keeps every integer an integer, however big)."""
    changes = [
        (
            c.op,
            c.key,
            json.dumps(json.loads(msgspec.json.encode(c.row)), sort_keys=True),
            c.source_version,
            c.source_commit_time,
        )
        for c in batch.changes
    ]
    return batch.batch_id, changes, batch.heartbeat


def assert_agree(schema: RowSchema, body: bytes) -> bool:
    """Both readers on one body; True when the fast reader took it. A body the fast reader
    refuses itself (a member named twice) the protocol models refuse too."""
    try:
        fast = run(BatchReader(schema).read(body))
    except RequestValidationError:
        assert protocol_models_take(schema, body) is None, f"only the fast reader refused {body[:300]!r}"
        raise
    if fast is None:
        return False
    slow = protocol_models_take(schema, body)
    assert slow is not None, f"the fast reader took a body the protocol models refuse: {body[:300]!r}"
    assert as_data(fast) == as_data(slow)
    return True


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def test_the_fast_reader_takes_ordinary_batches_with_the_protocol_models_values() -> None:
    body = batch(*(upsert(n, 1) for n in range(50)), delete(99, 2), {**delete(98, 2), "row": None})
    body["heartbeat"] = {"seq": 7, "source_time": "2026-11-01T08:00:00.123456+08:00"}
    assert assert_agree(POPULATION, encode(body))
    assert assert_agree(MEASUREMENTS, encode(batch(measurement(1), measurement(2, pm25=40), measurement(3, note=None))))
    assert assert_agree(POPULATION, encode({"batch_id": str(uuid.uuid4()), "heartbeat": body["heartbeat"]}))


def _with_row(**row: Any) -> bytes:
    change = upsert(1, 1)
    change["row"] = {**change["row"], **row}
    return encode(batch(change))


def _with_change(**fields: Any) -> bytes:
    return encode(batch({**upsert(1, 1), **fields}))


EDGE_CASES = {
    # Text PostgreSQL cannot hold, anywhere.
    "NUL in a row": _with_row(name="a\x00b"),
    "NUL in a key": encode(batch({**delete(1, 1), "key": "a\x00"})),
    # Integers beyond 64 bits: orjson reads some as floats, msgspec as integers.
    "row integer 2**63": _with_row(household_size=2**63),
    "row integer 2**64": _with_row(household_size=2**64),
    "row number 2**64": _with_row(income=2**64),
    "row number 2**63": _with_row(income=2**63),
    "row number -0": _with_row(income=-0.0),
    "row number tiny": _with_row(income=5e-324),
    "source_version 2**63": _with_change(source_version=2**63),
    "source_version -1": _with_change(source_version=-1),
    "source_version true": _with_change(source_version=True),
    "key true": encode(batch({**delete(1, 1), "key": True})),
    "key 1.0": encode(batch({**delete(1, 1), "key": 1.0})),
    "integer 1.0": _with_row(household_size=1.0),
    "number true": _with_row(income=True),
    "boolean 1": _with_row(is_resident=1),
    # Commit times: the fast reader must parse them as pydantic does (7 digits: truncated, not rounded).
    "commit time 7 digits": _with_change(source_commit_time="2026-11-01T08:00:00.9999999+08:00"),
    "commit time with a space": _with_change(source_commit_time="2026-11-01 08:00:00+08:00"),
    "commit time +0800": _with_change(source_commit_time="2026-11-01T08:00:00+0800"),
    "commit time comma": _with_change(source_commit_time="2026-11-01T08:00:00,5Z"),
    "commit time naive": _with_change(source_commit_time="2026-11-01T08:00:00"),
    "commit time as a number": _with_change(source_commit_time=1_700_000_000),
    "row timestamp naive": _with_row(updated_at="2026-11-01T08:00:00"),
    "row date week form": _with_row(birth_date="2026-W01-1"),
    "row date compact": _with_row(birth_date="20261101"),
    "row date impossible": _with_row(birth_date="2026-02-30"),
    "row key differs": _with_row(id_number=person(2)["id_number"]),
    "bad check digit, delete": encode(batch({**delete(1, 1), "key": person(1)["id_number"][:-1] + "0"})),
    "bad check digit, upsert": _with_change(
        key=person(1)["id_number"][:-1] + "0", row={**person(1), "id_number": person(1)["id_number"][:-1] + "0"}
    ),
    "unknown field": _with_row(shoe_size=42),
    "required field null": _with_row(name=None),
    "upsert without a row": encode(batch({k: v for k, v in upsert(1, 1).items() if k != "row"})),
    "upsert row null": _with_change(row=None),
    "delete with a row": encode(batch({**delete(1, 1), "row": person(1)})),
    "unknown op": _with_change(op="merge"),
    "unknown change field": _with_change(extra=1),
    "batch id braces": encode({**batch(upsert(1, 1)), "batch_id": "{" + str(uuid.uuid4()) + "}"}),
    "batch id hex": encode({**batch(upsert(1, 1)), "batch_id": uuid.uuid4().hex}),
    "batch id urn": encode({**batch(upsert(1, 1)), "batch_id": uuid.uuid4().urn}),
    "empty batch": encode({"batch_id": str(uuid.uuid4()), "changes": []}),
    "heartbeat null": encode({**batch(upsert(1, 1)), "heartbeat": None}),
    "heartbeat naive": encode({**batch(upsert(1, 1)), "heartbeat": {"seq": 1, "source_time": "2026-11-01T08:00:00"}}),
    "heartbeat seq 2**63": encode({**batch(), "heartbeat": {"seq": 2**63, "source_time": "2026-11-01T08:00:00Z"}}),
    "too many changes": encode(batch(*[upsert(1, 1)] * (MAX_BATCH_CHANGES + 1))),
    "byte order mark": b"\xef\xbb\xbf" + encode(batch(upsert(1, 1))),
    "trailing garbage": encode(batch(upsert(1, 1))) + b" x",
    "trailing whitespace": encode(batch(upsert(1, 1))) + b" \n",
    "invalid UTF-8": _with_row(name="@").replace(b'"@"', b'"\xff"'),
    "lone surrogate": _with_row(name="@").replace(b'"@"', b'"\\ud800"'),
    "NaN": _with_row(income="@").replace(b'"@"', b"NaN"),
    "not an object": b"[]",
}


@pytest.mark.parametrize("body", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_cases_read_alike(body: bytes) -> None:
    assert_agree(POPULATION, body)


def _compact(body: bytes) -> bytes:
    return json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()


_KEY = upsert(1, 1)["key"].encode()
DUPLICATE_MEMBERS = {
    "a row field, the good value last": _with_change(row="@").replace(
        b'"@"', b'{"id_number": "%s", "name": 1, "name": "x"}' % _KEY
    ),
    "the change's key, the good value last": _with_change(key="@").replace(b'"@"', b'"x", "key": "%s"' % _KEY),
    "the batch id": encode(batch(upsert(1, 1))).replace(b'{"batch_id"', b'{"batch_id": "x", "batch_id"'),
    "the heartbeat's seq": encode(
        {**batch(upsert(1, 1)), "heartbeat": {"seq": 1, "source_time": "2026-11-01T08:00:00Z"}}
    ).replace(b'"seq": 1', b'"seq": -1, "seq": 1'),
    "a nullable row field null, then set": _with_change(row="@").replace(
        b'"@"', b'{"id_number": "%s", "name": "a", "remark": null, "remark": "x"}' % _KEY
    ),
}


@pytest.mark.parametrize("body", DUPLICATE_MEMBERS.values(), ids=DUPLICATE_MEMBERS.keys())
@pytest.mark.parametrize("layout", ["as sent", "compact", "a string starting with a colon", "an escaped quote"])
def test_a_member_named_twice_is_refused_by_both_readers(body: bytes, layout: str) -> None:
    if layout == "compact":
        # json.loads keeps one of the two: write the duplicate back in after compacting.
        body = body.replace(b", ", b",").replace(b": ", b":")
    elif layout == "a string starting with a colon":
        body = body.replace(b'"name": "x"', b'"name": ":x"').replace(b", ", b",").replace(b": ", b":")
    elif layout == "an escaped quote":
        body = body.replace(b'"address": "', b'"address": "\\"')
    with pytest.raises(RequestValidationError, match="twice"):
        run(read(body, BatchReader(POPULATION)))
    with pytest.raises(RequestValidationError, match="twice"):
        read_by_the_protocol_models(body)


def test_members_that_only_look_doubled_are_read() -> None:
    """Strings that would fool a count of '":' (a colon first, an escaped quote, spaced colons)."""
    for name in (":x", 'say "hi":', '"":'):
        body = encode(batch(upsert(1, 1, name=name)))
        assert assert_agree(POPULATION, body)
        assert assert_agree(POPULATION, _compact(body))
    spaced = encode(batch(upsert(1, 1))).replace(b'": ', b'" : ')
    assert assert_agree(POPULATION, spaced)


# Generated bodies: ordinary changes with one part replaced by any JSON value, removed, or doubled.
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64, 0])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "2026-11-01",
            "2026-02-29",
            "20261101",
            "2026-11-01T08:00:00Z",
            "2026-11-01T08:00:00.1234567+08:00",
            "2026-11-01 08:00:00+08:00",
            "2026-11-01T08:00:00",
            "2026-11-01T08:00:00+08",
            str(uuid.uuid4()),
            person(5)["id_number"],
            "upsert",
            "delete",
        ]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["id_number", "x", "seq"]), inner),
    max_leaves=5,
)


_offsets = st.integers(-23 * 60, 23 * 60).map(lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))
_VALID = {
    FieldType.STRING: st.text(max_size=20),
    FieldType.INTEGER: st.integers(-(2**63), 2**63 - 1),
    FieldType.NUMBER: st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False),
    FieldType.BOOLEAN: st.booleans(),
    FieldType.DATE: st.dates().map(dt.date.isoformat),
    FieldType.TIMESTAMP: st.datetimes(timezones=_offsets).map(dt.datetime.isoformat),
}


def _valid_value(schema: RowSchema, name: str) -> st.SearchStrategy[Any]:
    field_type, nullable = schema.fields[name]
    return _VALID[field_type] | st.none() if nullable else _VALID[field_type]


@st.composite
def _bodies(draw: st.DrawFn, make_change: Any, schema: RowSchema) -> bytes:
    """A body of ordinary changes with values of their fields' types, and (mostly) one part
    replaced by any JSON value, removed, or given to a field that does not exist."""
    row_fields = list(schema.fields)
    changes = [make_change(n) for n in range(draw(st.integers(1, 3)))]
    for change in changes:
        for name in change.get("row", {}):
            if name != schema.primary_key and draw(st.booleans()):
                change["row"][name] = draw(_valid_value(schema, name))
    if schema.fields[schema.primary_key][0] is FieldType.INTEGER and draw(st.booleans()):
        key = draw(st.integers(-(2**63), 2**63 - 1))
        changes[0]["key"] = key
        changes[0].get("row", {})[schema.primary_key] = key
    body: dict[str, Any] = {"batch_id": str(uuid.uuid4()), "changes": changes}
    if draw(st.integers(0, 3)) == 0:
        return encode(body)
    if draw(st.booleans()):
        body["heartbeat"] = {"seq": 1, "source_time": "2026-11-01T08:00:00Z"}
    target = draw(st.sampled_from(["row", "change", "batch", "heartbeat"]))
    if target == "row":
        container = changes[draw(st.integers(0, len(changes) - 1))].setdefault("row", {})
        name = draw(st.sampled_from([*row_fields, "unknown"]))
    elif target == "change":
        container = changes[draw(st.integers(0, len(changes) - 1))]
        name = draw(st.sampled_from(["op", "key", "row", "source_version", "source_commit_time", "unknown"]))
    elif target == "batch":
        container, name = body, draw(st.sampled_from(["batch_id", "changes", "heartbeat", "unknown"]))
    else:
        container = body.setdefault("heartbeat", {"seq": 1, "source_time": "2026-11-01T08:00:00Z"})
        name = draw(st.sampled_from(["seq", "source_time", "unknown"]))
    if draw(st.integers(0, 4)) == 0:
        container.pop(name, None)
    else:
        container[name] = draw(_json_values)
    return encode(body)


_generated = settings(max_examples=400, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))


@_generated
@given(_bodies(lambda n: upsert(n, 1) if n % 3 else delete(n, 1), POPULATION))
def test_generated_population_bodies_read_alike(body: bytes) -> None:
    assert_agree(POPULATION, body)


@_generated
@given(_bodies(measurement, MEASUREMENTS))
def test_generated_measurement_bodies_read_alike(body: bytes) -> None:
    assert_agree(MEASUREMENTS, body)
