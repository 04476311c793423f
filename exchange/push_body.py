"""The body of a push: read and checked against its resource's schema.

Reading a 1,000-change batch was most of the exchange's work per push: orjson to Python
objects (1.3 ms), the protocol models (2.6 ms), then every row against the schema in Python
(3.9 ms). The fast reader lets msgspec decode the body straight into types made from the
resource's fields, checking them as it goes (about 1 ms); what msgspec cannot check (dates
and timestamps as text, check digits, each row's key against its change's) is checked after,
by the same functions as before, and the commit times are parsed by pydantic as before.

The fast reader only ever takes a body that the protocol models take, with the same values.
A body it does not take, for whatever reason, is read again by the protocol models
(`gdx.protocol.ChangeBatch`) and its rows checked one by one, so every refusal names the
field and the index exactly as it always has. tests/exchange/test_push_body.py holds the two
readers to that.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import msgspec
import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError

from exchange.errors import ApiError
from exchange.strict_json import DuplicateMember, loads_strict
from gdx.fields import TYPE_CHECKS, FieldType, RowError, RowSchema
from gdx.protocol import MAX_BATCH_CHANGES, ChangeBatch, Heartbeat


class PushedChange(Protocol):
    """A change as the push works with it: a protocol model (gdx.protocol.Change), or the
    fast reader's struct with the same attributes."""

    @property
    def op(self) -> str: ...
    @property
    def key(self) -> str | int: ...
    @property
    def row(self) -> Any: ...
    @property
    def source_version(self) -> int: ...
    @property
    def source_commit_time(self) -> dt.datetime: ...


@dataclass(frozen=True)
class PushedBatch:
    batch_id: uuid.UUID
    changes: Sequence[PushedChange]
    heartbeat: Heartbeat | None
    # Whether the rows were checked against the schema the batch was read for (the fast
    # reader checks them as it reads; the protocol models leave that to the push).
    rows_checked: bool


async def read(body: bytes, reader: BatchReader | None) -> PushedBatch:
    """The batch in ``body``: read by ``reader`` when it takes it, by the protocol models
    otherwise (which raise what FastAPI would have raised for a ChangeBatch body)."""
    if reader is not None:
        batch = await reader.read(body)
        if batch is not None:
            return batch
    return read_by_the_protocol_models(body)


def read_by_the_protocol_models(body: bytes) -> PushedBatch:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _malformed(exc) from None
    refuse_duplicate_members(body)
    try:
        batch = ChangeBatch.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None
    return PushedBatch(batch.batch_id, batch.changes, batch.heartbeat, rows_checked=False)


def _malformed(exc: json.JSONDecodeError) -> RequestValidationError:
    """As FastAPI refuses a body that is not JSON."""
    return RequestValidationError(
        [{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "ctx": {"error": exc.msg}}]
    )


def refuse_duplicate_members(body: bytes) -> None:
    """Refuse a body (as malformed JSON) in which an object names a member twice."""
    try:
        loads_strict(body)
    except DuplicateMember as exc:
        raise _malformed(exc) from None


def _members_written(body: bytes) -> int | None:
    """How many object members ``body`` writes, counted as its '":' pairs; None where that
    count could be short: a backslash (an escaped quote is no string's end) or white space
    before a colon. Otherwise every quote opens or closes a string, and the count is over
    only for a string that begins with a colon: a body whose count equals the members
    decoded names none twice. Searches that begin with a rare byte and one count, all in C:
    about 0.6 ms for 1,000 rows with the members counted, where a parse that watches for duplicates takes 3.4."""
    # (A search for one byte is a memchr; for two, a scan of the body however rare the first.)
    if b"\\" in body or b"\n" in body or b"\t" in body or b"\r" in body or (b" " in body and b" :" in body):
        return None
    return body.count(b'":')


async def body_of(request: Request) -> bytes:
    """The request's body, refused as FastAPI refuses a JSON body of another media type."""
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if not (media_type == "application/json" or media_type.endswith("+json")):
        raise RequestValidationError(
            [{"type": "model_attributes_type", "loc": ("body",), "msg": "the body must be JSON (application/json)"}]
        )
    return await request.body()


def documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads its body itself; app.py adds the model's
    schema to the document's components."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# Checking a batch row by row takes the event loop for milliseconds; both readers let other
# requests go on every so many changes. The push holding a resource's lock waits for the loop
# between its statements, and every batch of that resource waits for it.
YIELD_EVERY = 100


async def check_rows(schema: RowSchema, batch: PushedBatch) -> None:
    """Reject the whole batch, naming each bad change by its index, before anything is written
    (a batch the fast reader took is checked already)."""
    if batch.rows_checked:
        return
    key_field = schema.primary_key
    problems = []
    for index, change in enumerate(batch.changes):
        if index % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        try:
            if change.row is None:
                schema.check_key(change.key)
            else:
                # check_row checks the row's key, which must be the change's key: one check, not two.
                if change.row.get(key_field) != change.key:
                    raise RowError(f"the row's {key_field!r} differs from the change's key")
                schema.check_row(change.row)
        except RowError as exc:
            problems.append({"index": index, "key": change.key, "problem": str(exc)})
            if len(problems) >= 100:
                break
    if problems:
        first = problems[0]
        raise ApiError(
            422,
            "invalid_changes",
            f"{len(problems)} change(s) rejected, first at index {first['index']}: {first['problem']}; "
            "nothing in this batch was applied",
            problems,
        )


# msgspec takes integers of any size; the protocol's are PostgreSQL's 64-bit bigint.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Key = str | _Int64

# Dates and timestamps stay text in the row, as the source sent them; their text is checked
# after decoding, by the checks the protocol models' path uses.
_DECODED_AS: dict[FieldType, Any] = {
    FieldType.STRING: str,
    FieldType.INTEGER: _Int64,
    FieldType.NUMBER: _Int64 | float,
    FieldType.BOOLEAN: bool,
    FieldType.DATE: str,
    FieldType.TIMESTAMP: str,
}
_CHECKED_AFTER = (FieldType.DATE, FieldType.TIMESTAMP)

# The commit times, parsed by the parser the protocol models use (pydantic's), in one call.
_COMMIT_TIMES = TypeAdapter(list[AwareDatetime])


class _Heartbeat(msgspec.Struct, forbid_unknown_fields=True):
    seq: _Count
    source_time: str


def _change_type(op: str, row: tuple[Any, ...]) -> Any:
    """The struct of one kind of change, told apart by its "op" (also its class attribute).
    Changes and rows hold plain values, never a cycle: the garbage collector need not track
    them (gc=False), which is 2,000 objects fewer to scan per 1,000-change batch."""
    return msgspec.defstruct(
        op.capitalize(),
        [("key", _Key), ("source_version", _Count), ("source_commit_time", str), row],
        kw_only=True,
        gc=False,
        tag_field="op",
        tag=op,
        forbid_unknown_fields=True,
        namespace={"op": op},
    )


class BatchReader:
    """Reads the batches of one version of a resource's schema (built once per version)."""

    def __init__(self, schema: RowSchema) -> None:
        # Struct attributes are f0, f1, ... renamed to the field names: a catalog field may be
        # called anything the protocol allows, even the name of a Python attribute.
        attributes = {name: f"f{index}" for index, name in enumerate(schema.fields)}
        row_fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for name, (field_type, nullable) in schema.fields.items():
            decoded = _DECODED_AS[field_type]
            if nullable:
                row_fields.append((attributes[name], decoded | None | msgspec.UnsetType, msgspec.UNSET))
            else:
                row_fields.append((attributes[name], decoded))
        row_type = msgspec.defstruct(
            "Row",
            row_fields,
            kw_only=True,
            gc=False,
            forbid_unknown_fields=True,
            rename={attribute: name for name, attribute in attributes.items()},
        )
        upsert = _change_type("upsert", ("row", row_type))
        # A delete may carry "row": null, as the protocol models allow. Members left out are
        # UNSET rather than a default, so that the members decoded can be counted.
        delete = _change_type("delete", ("row", None | msgspec.UnsetType, msgspec.UNSET))
        batch = msgspec.defstruct(
            "Batch",
            [
                ("batch_id", uuid.UUID),
                (
                    "changes",
                    Annotated[list[upsert | delete], msgspec.Meta(max_length=MAX_BATCH_CHANGES)] | msgspec.UnsetType,  # type: ignore[valid-type]
                    msgspec.UNSET,
                ),
                ("heartbeat", _Heartbeat | None | msgspec.UnsetType, msgspec.UNSET),
            ],
            kw_only=True,
            forbid_unknown_fields=True,
        )
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(batch)
        self._schema = schema
        self._row_type = row_type
        self._row_members = len(schema.fields)
        self._key_attribute = attributes[schema.primary_key]
        self._checked_after = [
            (attributes[name], TYPE_CHECKS[field_type])
            for name, (field_type, _) in schema.fields.items()
            if field_type in _CHECKED_AFTER
        ]

    async def read(self, body: bytes) -> PushedBatch | None:
        """The batch, read and checked; None when the protocol models must read it."""
        # JSON writes a NUL in a string only as \\u0000, and text may not hold one: such a
        # body is left to the row checks, which name the field.
        if b"\\u0000" in body:
            return None
        try:
            batch = self._decoder.decode(body)
        except msgspec.MsgspecError:
            return None
        if self._members_decoded(batch) != _members_written(body):
            refuse_duplicate_members(body)  # or the count was off: the body is read as it is
        unset = msgspec.UNSET
        changes = batch.changes = [] if batch.changes is unset else batch.changes
        if batch.heartbeat is unset:
            batch.heartbeat = None
        if not changes and batch.heartbeat is None:
            return None
        times = [change.source_commit_time for change in changes]
        if batch.heartbeat is not None:
            times.append(batch.heartbeat.source_time)
        try:
            parsed = _COMMIT_TIMES.validate_python(times)
            for start in range(0, len(changes), YIELD_EVERY):
                if start:
                    await asyncio.sleep(0)
                self._check(changes[start : start + YIELD_EVERY])
        except (ValidationError, RowError, TypeError):
            return None
        for change, time in zip(changes, parsed, strict=False):
            change.source_commit_time = time
        heartbeat = None
        if batch.heartbeat is not None:
            heartbeat = Heartbeat(seq=batch.heartbeat.seq, source_time=parsed[-1])
        return PushedBatch(batch.batch_id, changes, heartbeat, rows_checked=True)

    def _members_decoded(self, batch: Any) -> int:
        """How many object members the decoded batch was read from."""
        unset = msgspec.UNSET
        members = 1 + (batch.changes is not unset) + (batch.heartbeat is not unset)
        if batch.heartbeat is not unset and batch.heartbeat is not None:
            members += 2
        if batch.changes is unset:
            return members
        astuple, row_type, row_members = msgspec.structs.astuple, self._row_type, self._row_members
        for change in batch.changes:
            row = change.row
            members += 4  # op, key, source_version, source_commit_time
            if row is unset:
                continue
            members += 1
            if type(row) is row_type:
                members += row_members - astuple(row).count(unset)
        return members

    def _check(self, changes: Sequence[Any]) -> None:
        """What msgspec did not check: each row's key is its change's and a valid key of the
        resource's kind; dates and timestamps parse. Raises on the first problem."""
        check_key = self._schema.check_key
        key_attribute = self._key_attribute
        checked_after = self._checked_after
        unset = msgspec.UNSET
        for change in changes:
            check_key(change.key)
            row = change.row
            if row is None or row is unset:
                change.row = None
                continue
            if getattr(row, key_attribute) != change.key:
                raise RowError("the row's key differs from the change's")
            for attribute, check in checked_after:
                value = getattr(row, attribute)
                if value is not None and value is not unset:
                    check(value)
