"""Profiles encode the same whether they come as a frame (training) or as request fields (serving)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recsys import schema as S
from recsys.profiles import ProfileBlock

RECORDS = [
    {"age": 25, "gender": "F", "occupation": "engineer", "zip": "55414"},
    {"age": 61, "gender": "M", "occupation": "retired", "zip": "T8H1N"},  # a Canadian zip: no region
    {"age": None, "gender": None, "occupation": None, "zip": None},
    {"gender": "F"},
    {"age": "33", "gender": "X", "occupation": "none", "zip": "0"},
    None,
]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def test_frame_and_records_encode_alike() -> None:
    frame = pd.DataFrame([r or {} for r in RECORDS], columns=list(S.PROFILE_FIELDS))
    a, b = ProfileBlock.from_frame(frame), ProfileBlock.from_records(RECORDS)
    assert same(a.age, b.age) and same(a.female, b.female) and same(a.zip_region, b.zip_region)
    assert same(a.present, b.present)
    assert list(b.age[:2]) == [25.0, 61.0] and b.age[4] == 33.0 and math.isnan(b.age[2])
    assert list(b.female[:2]) == [1.0, 0.0] and math.isnan(b.female[4])
    assert b.zip_region[0] == 5.0 and b.zip_region[4] == 0.0 and math.isnan(b.zip_region[1])
    assert b.occupation[0] == "engineer" and a.occupation[0] == "engineer"


def test_a_frame_without_columns_knows_nothing() -> None:
    block = ProfileBlock.from_frame(pd.DataFrame({S.AGE: [30]}))
    assert block.age[0] == 30 and math.isnan(block.female[0]) and not block.present[0, 1:].any()


def test_stored_values_win_and_gaps_are_filled() -> None:
    stored = ProfileBlock.from_records([{"age": 40, "gender": "M", "zip": "T8H1N"}, None])
    request = ProfileBlock.from_records([{"age": 20, "gender": "F", "occupation": "artist", "zip": "90210"},
                                         {"age": 20, "occupation": "artist"}])
    merged = stored.fill_missing(request)
    assert merged.age[0] == 40 and merged.female[0] == 0.0 and merged.occupation[0] == "artist"
    assert math.isnan(merged.zip_region[0])  # the stored zip was given (just not a US one): it stays
    assert merged.age[1] == 20 and math.isnan(merged.female[1]) and merged.occupation[1] == "artist"
    assert merged.present.tolist() == [[True] * 4, [True, False, True, False]]


def test_blank_rows_and_lengths() -> None:
    block = ProfileBlock.from_records(RECORDS[:2]).blank_rows(np.array([False, True]))
    assert block.age[0] == 25 and math.isnan(block.age[1]) and not block.present[1].any()
    with pytest.raises(ValueError, match="2 profiles for 3 users"):
        ProfileBlock.of(block, 3)
    assert len(ProfileBlock.of(None, 3)) == 3
