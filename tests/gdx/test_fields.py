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


def _with_check_digit(first17: str) -> str:
    from stdnum.cn import ric

    return first17 + ric.calc_check_digit(first17 + "0")


@pytest.mark.parametrize(
    ("birth_date", "ok"), [("19480229", True), ("19490229", False), ("19490230", False), ("19491300", False)]
)
def test_a_resident_id_needs_a_real_birth_date(birth_date: str, ok: bool) -> None:
    number = _with_check_digit(f"110105{birth_date}002")
    for _ in range(2):  # the second time from the remembered dates
        if ok:
            check_key(KeyKind.RESIDENT_ID, number)
        else:
            with pytest.raises(RowError, match="no such birth date"):
                check_key(KeyKind.RESIDENT_ID, number)


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
