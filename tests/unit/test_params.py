"""params.yaml: the training and gate config it holds, errors naming file and field, round-trip updates."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import DriftConfig, TrainConfig
from recsys.experiments.ab import AbConfig
from recsys.monitoring.ctr import CtrConfig
from recsys.monitoring.signals import SignalConfig
from recsys.params import ParamsError, drift_config, load_params, train_config, update_params
from recsys.ranking.tune import write_config
from recsys.registry.gate import GateConfig

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_the_repository_params_match_the_code_defaults() -> None:
    params = load_params(REPO_PARAMS)
    assert train_config(REPO_PARAMS) == TrainConfig()
    assert GateConfig.model_validate(params["gate"]) == GateConfig()
    assert CtrConfig.model_validate(params["ctr"]) == CtrConfig()
    assert AbConfig.model_validate(params["ab"]) == AbConfig()
    assert drift_config(REPO_PARAMS) == DriftConfig()
    assert SignalConfig.model_validate(params["signals"]) == SignalConfig()
    assert set(params) == {"train", "candidates", "ranker", "backtest", "evaluate", "gate", "drift", "ctr", "ab",
                           "signals"}


@pytest.mark.parametrize(("text", "needles"), [
    ("ranker:\n  num_leaves: lots\n", ["field ranker.num_leaves", "'lots'"]),
    ("ranker:\n  leaves: 3\n", ["field ranker.leaves", "Extra inputs"]),
    ("candidates: [1, 2]\n", ["field candidates"]),
    ("ranker: {num_leaves: 3\n", ["not valid YAML"]),
    ("- a\n- b\n", ["expected a mapping"]),
])
def test_bad_params_name_the_file_and_the_field(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as info:
        train_config(path)
    for needle in [str(path), *needles]:
        assert needle in str(info.value)


def test_missing_sections_take_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("ranker:\n  num_leaves: 15\n")
    cfg = train_config(path)
    assert cfg.ranker.num_leaves == 15 and cfg.candidates == TrainConfig().candidates


def test_update_keeps_comments_and_other_sections(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(REPO_PARAMS.read_text())
    tuned = TrainConfig().model_copy(update={"ranker": TrainConfig().ranker.model_copy(update={"num_leaves": 63})})
    write_config(tuned, path)
    text = path.read_text()
    assert "# max p95 of single-user recommend()" in text and "num_leaves: 63" in text
    assert train_config(path).ranker.num_leaves == 63
    assert load_params(path)["gate"] == load_params(REPO_PARAMS)["gate"]


def test_update_creates_a_missing_file(tmp_path: Path) -> None:
    path = update_params(tmp_path / "new.yaml", {"ranker": {"num_leaves": 7}})
    assert train_config(path).ranker.num_leaves == 7
