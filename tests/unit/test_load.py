"""Loading the atomic files: good input gets the schema's dtypes, bad input a DataFileError naming the file.

Also the fetch step's failure modes (a wheel without the data, checksum mismatch); the real MovieLens-100K is
tests/integration/test_data.py.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from recsys import schema
from recsys.data import fetch
from recsys.data.fetch import DataUnavailableError, extract_dataset, fetch_movielens, raw_files_ok
from recsys.data.load import DataFileError, load_interactions, load_items, load_movielens, load_users

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
USER_HEADER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"

GOOD_INTER = INTER_HEADER + "196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n22\t377\t1\t878887116\n"
GOOD_USER = (USER_HEADER + "196\t49\tM\twriter\t55105\n186\t39\tF\texecutive\t00000\n"
             "22\t25\tM\twriter\tT8H1N\n")
GOOD_ITEM = (ITEM_HEADER + "242\tKolya\t1996\tComedy\n"
             "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n"
             "377\tHeavyweights\t1994\tChildren's Comedy\n267\tunkonwn\tunkonwn\tunknown\n")

Loader = Callable[[Path], pd.DataFrame]
LOADERS: dict[str, tuple[Loader, str, str]] = {
    "inter": (load_interactions, INTER_HEADER, GOOD_INTER),
    "user": (load_users, USER_HEADER, GOOD_USER),
    "item": (load_items, ITEM_HEADER, GOOD_ITEM),
}


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def assert_names_file(loader: Loader, path: Path, match: str | None = None) -> DataFileError:
    with pytest.raises(DataFileError, match=match) as info:
        loader(path)
    assert str(path) in str(info.value)
    return info.value


# -- good input ----------------------------------------------------------------------------------------------
def test_good_interactions(tmp_path: Path) -> None:
    frame = load_interactions(write(tmp_path / "ml.inter", GOOD_INTER))
    assert {c: str(t) for c, t in frame.dtypes.items()} == schema.INTERACTION_DTYPES
    assert frame[schema.TS].is_monotonic_increasing
    assert frame[schema.USER].tolist() == [22, 196, 186]
    assert frame[schema.RATING].tolist() == [1.0, 3.0, 3.5]


def test_the_fast_reader_agrees_with_the_careful_one_and_leaves_bad_files_to_it(tmp_path: Path) -> None:
    """Interactions go through pyarrow when the file is well formed (the 25M-row case); anything else falls back
    to the line-by-line reader, whose messages the tests below check."""
    from recsys.data.load import _INTER_COLS, _read, _read_interactions_fast, _to_number

    path = write(tmp_path / "ml.inter", GOOD_INTER + "7\t8\t5\t881250950\n")
    fast = _read_interactions_fast(path)
    frame = _read(path, _INTER_COLS)
    careful = pd.DataFrame({c: _to_number(frame, c, path, t) for c, t in schema.INTERACTION_DTYPES.items()})
    assert fast is not None and fast.equals(careful)
    for bad in (INTER_HEADER, INTER_HEADER + "1\t2\t3\n", INTER_HEADER + "1\tx\t3\t4\n",
                INTER_HEADER + "1\t2\t3\t99999999999999999999\n", INTER_HEADER + "4294967296\t2\t3\t4\n"):
        assert _read_interactions_fast(write(tmp_path / "bad.inter", bad)) is None, bad
    assert _read_interactions_fast(write(tmp_path / "latin.inter", GOOD_INTER.encode() + b"1\t2\t3\t4\xe9\n")) is None


def test_good_users(tmp_path: Path) -> None:
    frame = load_users(write(tmp_path / "ml.user", GOOD_USER))
    assert {c: str(t) for c, t in frame.dtypes.items()} == schema.USER_DTYPES
    assert frame[schema.ZIP].tolist() == ["55105", "00000", "T8H1N"]  # zips stay text: leading zeros, letters
    assert frame[schema.AGE].tolist() == [49, 39, 25]


def test_good_items(tmp_path: Path) -> None:
    frame = load_items(write(tmp_path / "ml.item", GOOD_ITEM))
    assert tuple(frame.columns) == schema.ITEM_COLUMNS
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        schema.ITEM: "int32", schema.TITLE: "string", schema.RELEASE_YEAR: "Int16", schema.GENRES: "string"}
    assert frame[schema.RELEASE_YEAR].isna().tolist() == [False, False, False, True]  # ML-100K's "unkonwn"
    assert frame[schema.GENRES].iloc[1] == "Crime Film-Noir Mystery Thriller"


def good_raw_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for kind, (_, _, good) in LOADERS.items():
        write(root / f"ml-100k.{kind}", good)
    return root


def test_load_movielens_and_its_hash(tmp_path: Path) -> None:
    a = load_movielens(good_raw_dir(tmp_path / "a"))
    assert (len(a.users), len(a.items), len(a.interactions)) == (3, 4, 3)
    assert len(a.data_hash) == 16
    assert load_movielens(good_raw_dir(tmp_path / "b")).data_hash == a.data_hash
    write(tmp_path / "b" / "ml-100k.inter", GOOD_INTER.replace("\t3.5\t", "\t4\t"))
    assert load_movielens(tmp_path / "b").data_hash != a.data_hash


def test_load_movielens_rejects_unknown_items(tmp_path: Path) -> None:
    raw = good_raw_dir(tmp_path)
    write(raw / "ml-100k.inter", GOOD_INTER + "22\t9999\t4\t878887117\n")
    with pytest.raises(DataFileError, match="not in") as info:
        load_movielens(raw)
    assert str(raw / "ml-100k.inter") in str(info.value)


# -- corrupt input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_missing_file(kind: str, tmp_path: Path) -> None:
    assert_names_file(LOADERS[kind][0], tmp_path / f"ml-100k.{kind}", "not found")


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_zero_bytes(kind: str, tmp_path: Path) -> None:
    assert_names_file(LOADERS[kind][0], write(tmp_path / f"ml-100k.{kind}", b""))


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_header_only(kind: str, tmp_path: Path) -> None:
    loader, header, _ = LOADERS[kind]
    assert_names_file(loader, write(tmp_path / f"ml-100k.{kind}", header), "no rows")


@pytest.mark.parametrize(("kind", "old", "new"), [
    ("inter", "rating:float", "score:float"),
    ("inter", "timestamp:float", "timestamp:token_seq"),
    ("user", "zip_code:token", "zip:token"),
    ("item", "class:token_seq", "genres:token_seq"),
])
def test_renamed_column(kind: str, old: str, new: str, tmp_path: Path) -> None:
    loader, _, good = LOADERS[kind]
    path = write(tmp_path / f"ml-100k.{kind}", good.replace(old, new))
    err = assert_names_file(loader, path, "missing column")
    assert old in str(err)


def test_dropped_column(tmp_path: Path) -> None:
    lines = [line.split("\t")[:3] for line in GOOD_INTER.splitlines()]
    content = "\n".join("\t".join(f) for f in lines) + "\n"
    assert_names_file(load_interactions, write(tmp_path / "ml-100k.inter", content), "timestamp")


@pytest.mark.parametrize(("kind", "content", "match"), [
    ("inter", INTER_HEADER + "1\t2\tfour\t881250949\n", "rating"),
    ("inter", INTER_HEADER + "1\t2\t\t881250949\n", "rating"),
    ("inter", INTER_HEADER + "1\t2\t3\t881250949\nx\t2\t3\t881250950\n", "user_id"),
    ("inter", INTER_HEADER + "1\t2\t3\tyesterday\n", "timestamp"),
    ("inter", INTER_HEADER + "1\t2\t6\t881250949\n", "outside 1..5"),
    ("inter", INTER_HEADER + "1\t2\t0\t881250949\n", "outside 1..5"),
    ("inter", INTER_HEADER + "1\t2\t-3\t881250949\n", "outside 1..5"),
    ("user", USER_HEADER + "1\tforty\tM\twriter\t55105\n", "age"),
    ("item", ITEM_HEADER + "one\tKolya\t1996\tComedy\n", "item_id"),
], ids=["rating-word", "rating-empty", "user-id-word", "timestamp-word", "rating-6", "rating-0",
        "rating-neg", "age-word", "item-id-word"])
def test_bad_values(kind: str, content: str, match: str, tmp_path: Path) -> None:
    assert_names_file(LOADERS[kind][0], write(tmp_path / f"ml-100k.{kind}", content), match)


@pytest.mark.parametrize(("kind", "content"), [
    ("inter", GOOD_INTER + "1\t2\t3\n"),            # last field missing
    ("inter", GOOD_INTER + "1\t2"),                 # cut in the middle of a row, no newline
    ("inter", INTER_HEADER + "1\t2\t3\t881250949\t5\n1\t2\n"),  # more fields, then fewer
], ids=["row-short", "cut-mid-row", "ragged"])
def test_truncated_interactions(kind: str, content: str, tmp_path: Path) -> None:
    assert_names_file(LOADERS[kind][0], write(tmp_path / f"ml-100k.{kind}", content))


@pytest.mark.parametrize("kind", ["user", "item"])
def test_truncated_profiles_and_items(kind: str, tmp_path: Path) -> None:
    loader, _, good = LOADERS[kind]
    cut = good.rstrip("\n").rsplit("\t", 2)[0] + "\n"  # the last row loses its last two fields
    assert_names_file(loader, write(tmp_path / f"ml-100k.{kind}", cut))


def test_extra_field_on_every_row(tmp_path: Path) -> None:
    content = INTER_HEADER + "1\t196\t242\t3\t881250949\n2\t186\t302\t3\t891717742\n"
    assert_names_file(load_interactions, write(tmp_path / "ml-100k.inter", content))


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_wrong_encoding(kind: str, tmp_path: Path) -> None:
    loader, _, good = LOADERS[kind]
    # a latin-1 "é" (0xE9) is not valid UTF-8
    content = good.replace("writer", "écrivain").replace("Kolya", "Café").replace("\t3.5\t", "\t3.5é\t")
    assert "é" in content
    assert_names_file(loader, write(tmp_path / f"ml-100k.{kind}", content.encode("latin-1")), "UTF-8")


# -- fetch ---------------------------------------------------------------------------------------------------
def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extract_from_a_zip_without_the_dataset(tmp_path: Path) -> None:
    wheel = make_zip(tmp_path / fetch.WHEEL_NAME, {"recbole/__init__.py": b""})
    with pytest.raises(DataUnavailableError, match="not a usable recbole wheel"):
        extract_dataset(wheel, tmp_path / "raw")
    assert not raw_files_ok(tmp_path / "raw")


def test_extract_from_a_file_that_is_not_a_zip(tmp_path: Path) -> None:
    wheel = write(tmp_path / fetch.WHEEL_NAME, b"certainly not a zip archive")
    with pytest.raises(DataUnavailableError, match=fetch.WHEEL_NAME):
        extract_dataset(wheel, tmp_path / "raw")


def test_extract_checks_member_checksums(tmp_path: Path) -> None:
    members = {f"{fetch.MEMBER_DIR}/{name}": b"tampered\n" for name in fetch.FILES_SHA256}
    wheel = make_zip(tmp_path / fetch.WHEEL_NAME, members)
    with pytest.raises(DataUnavailableError, match="sha256"):
        extract_dataset(wheel, tmp_path / "raw")
    assert not any((tmp_path / "raw" / name).exists() for name in fetch.FILES_SHA256)


def test_download_rejects_a_wheel_with_the_wrong_checksum(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_pip(dest: Path) -> None:
        calls.append(dest)
        write(dest / fetch.WHEEL_NAME, b"a wheel with the wrong bytes")

    monkeypatch.setattr(fetch, "_pip_download", fake_pip)
    write(tmp_path / fetch.WHEEL_NAME, b"a corrupt cached copy")  # not trusted: downloaded again
    with pytest.raises(DataUnavailableError, match="sha256"):
        fetch.download_wheel(tmp_path)
    assert calls == [tmp_path]
    assert not (tmp_path / fetch.WHEEL_NAME).exists()  # the bad download is not left in the cache


def test_download_failure_is_data_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_pip(dest: Path) -> None:
        raise fetch._PipDownloadError("no route to the index")

    monkeypatch.setattr(fetch, "_pip_download", failing_pip)
    with pytest.raises(DataUnavailableError, match="no route to the index"):
        fetch_movielens(tmp_path / "raw", tmp_path / "cache")
    monkeypatch.setattr(fetch, "_pip_download", lambda dest: None)  # "succeeds" without a file
    with pytest.raises(DataUnavailableError, match="missing"):
        fetch.download_wheel(tmp_path / "cache")
