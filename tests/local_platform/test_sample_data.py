"""The local platform's sample data passes the exchange's own key checks."""

from __future__ import annotations

from stdnum.cn import ric
from stdnum.cn import uscc as uscc_number

from local_platform.sample_data import credit_code, legal_entity, resident, resident_id


def test_resident_ids_are_valid_distinct_and_say_the_birth_date_and_gender() -> None:
    numbers = [resident_id(n) for n in range(0, 100_000, 37)]
    assert len(set(numbers)) == len(numbers)
    for n in (0, 1, 11_999, 12_000, 99_999):
        assert ric.is_valid(resident_id(n)), resident_id(n)
    row = resident(12_345)
    assert row["birth_date"] == ric.get_birth_date(row["id_number"])
    assert row["gender"] == ("男" if int(row["id_number"][16]) % 2 else "女")
    assert row == resident(12_345)  # deterministic for a seed
    assert resident(12_345, seed=1)["name"] != row["name"] or resident(12_346)["name"] != row["name"]


def test_credit_codes_are_valid_and_distinct() -> None:
    codes = [credit_code(n) for n in range(5_000)]
    assert len(set(codes)) == 5_000
    assert all(uscc_number.is_valid(code) for code in codes[:500])
    assert legal_entity(7)["credit_code"] == codes[7]
    assert legal_entity(7)["name"].startswith("张家港")
