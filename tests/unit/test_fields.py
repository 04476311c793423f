"""Key kinds and row checks shared by the exchange and the agent."""

from __future__ import annotations

import pytest

from gdx.fields import FieldType, KeyKind, RowError, RowSchema, check_key


@pytest.mark.parametrize(
    ("kind", "value", "ok"),
    [
        (KeyKind.RESIDENT_ID, "11010519491231002X", True),
        (KeyKind.RESIDENT_ID, "110105194912310021", False),  # check digit
        (KeyKind.RESIDENT_ID, "11010519491331002X", False),  # month 13
        (KeyKind.USCC, "91110000600037341L", True),
        (KeyKind.USCC, "91110000600037341M", False),
        (KeyKind.PLAIN, "anything", True),
    ],
)
def test_key_kinds(kind: KeyKind, value: str, ok: bool) -> None:
    if ok:
        check_key(kind, value)
    else:
        with pytest.raises(RowError, match=kind.value):
            check_key(kind, value)


def test_row_schema_names_the_field() -> None:
    schema = RowSchema(
        {"code": (FieldType.STRING, False), "n": (FieldType.INTEGER, True), "flag": (FieldType.BOOLEAN, True)},
        primary_key="code",
        key_kind=KeyKind.USCC,
    )
    schema.check_row({"code": "91110000600037341L", "n": 3, "flag": None})
    with pytest.raises(RowError, match="field 'n': expected an integer"):
        schema.check_row({"code": "91110000600037341L", "n": True})
    with pytest.raises(RowError, match="field 'flag': expected true or false"):
        schema.check_row({"code": "91110000600037341L", "flag": 1})
    with pytest.raises(RowError, match="invalid uscc"):
        schema.check_row({"code": "91110000600037341X"})
