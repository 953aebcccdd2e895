"""The typed configuration of the stages: candidates, ranker and backtest (``params.yaml``'s training sections),
the drift check (its ``drift`` section), and the synthetic data set's parameters (``recsys data synth``).

Environment settings are in :mod:`recsys.settings`; the gate's thresholds are :class:`recsys.registry.gate.GateConfig`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


class BacktestConfig(BaseModel):
    """Rolling-origin temporal backtest: train on weeks < W, test on [W, W + horizon)."""

    model_config = ConfigDict(extra="forbid")

    first_cut: int = Field(12, ge=2, description="first test week W")
    last_cut: int = Field(28, ge=2, description="last test week W (W + horizon must stay inside the data)")
    step: int = Field(1, ge=1, description="weeks between two cuts")
    horizon: int = Field(4, ge=1, le=8, description="test window length in weeks")
    report_from: int = Field(20, ge=2, description="cuts from this week on are report cuts, which no design "
                             "choice ever looks at; the earlier ones are the design cuts every choice is made on")

    def cuts(self) -> list[int]:
        return list(range(self.first_cut, self.last_cut + 1, self.step))

    def design_cuts(self) -> list[int]:
        return [w for w in self.cuts() if w < self.report_from]

    def report_cuts(self) -> list[int]:
        return [w for w in self.cuts() if w >= self.report_from]


class CandidateConfig(BaseModel):
    """Candidate generation: how many items each generator proposes, and its hyper-parameters."""

    model_config = ConfigDict(extra="forbid")

    per_generator: int = Field(100, ge=10, le=1000)
    ease_lambda: float = Field(300.0, gt=0)
    knn_neighbours: int = Field(100, ge=5)
    knn_shrink: float = Field(10.0, ge=0)
    recent_items: int = Field(10, ge=1, description="history items the session-kNN generator looks at")
    pop_half_life_days: float = Field(14.0, gt=0)
    new_user_half_life_days: float = Field(28.0, gt=0)
    tune: bool = Field(True, description="tune the generators' main parameters on the validation window")
    ease_max_items: int | None = Field(None, ge=2, description="fit EASE on only this many most popular items "
                                       "(its inverse is dense items x items); None: every item")
    knn_max_items: int | None = Field(None, ge=2, description="item-kNN similarities towards only this many "
                                      "most popular items (cost items x this, not items squared); None: every item")
    als_factors: int = Field(0, ge=0, le=1024, description="add an ALS generator (implicit) with this many "
                             "factors; 0: none")
    als_iterations: int = Field(15, ge=1, le=100)
    als_regularization: float = Field(0.05, ge=0)
    als_alpha: float = Field(2.0, gt=0, description="ALS confidence per interaction: 1 + alpha")
    covisit_window: int = Field(3, ge=0, le=20, description="add the co-visitation (session) generator: items at "
                                "most this many positions apart in users' sequences; 0: none")
    rank_depth: int | None = Field(None, ge=10, description="rank features exact for each generator's top "
                                   "rank_depth items, the rest share rank_depth + 1 (a partition, not a sort of the "
                                   "catalog per user); None: exact for every item")

    @model_serializer(mode="wrap")
    def _omit_default_scaling(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_defaults(self, handler(self), _SCALING_KEYS)


_SCALING_KEYS = ("ease_max_items", "knn_max_items", "als_factors", "als_iterations", "als_regularization", "als_alpha",
                 "rank_depth")


def _omit_defaults(model: BaseModel, out: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``out`` without ``keys`` whose value is the field's default: keys added later leave existing run keys and
    DVC hashes as they were."""
    fields = type(model).model_fields
    for key in keys:
        if key in out and out[key] == fields[key].default:
            del out[key]
    return out


class RankerConfig(BaseModel):
    """LightGBM LambdaRank and its training windows."""

    model_config = ConfigDict(extra="forbid")

    label_windows: int = Field(12, ge=1, le=40, description="stacked label windows before the validation one")
    window_stride: int = Field(1, ge=1, description="weeks between two stacked label windows")
    graded_labels: bool = True
    refit: bool = Field(True, description="after early stopping, refit with the best iteration count on all "
                        "label windows up to the validation one (labels still end before the cut)")
    num_leaves: int = Field(31, ge=4)
    learning_rate: float = Field(0.05, gt=0, le=1)
    n_estimators: int = Field(100, ge=10, description="trees (the most, with early stopping)")
    min_child_samples: int = Field(50, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    max_bin: int = Field(63, ge=15, le=255, description="histogram bins per feature (fewer = faster)")
    early_stopping_rounds: int = Field(50, ge=5)
    early_stopping: bool = Field(False, description="stop early on the validation window (patience "
                                 "early_stopping_rounds); false: always n_estimators trees")
    num_threads: int = Field(2, ge=1)
    seed: int = 0
    objective: Literal["lambdarank", "rank_xendcg"] = Field("lambdarank", description="LightGBM's ranking objective")
    label_gain: list[float] | None = Field(None, description="LambdaRank's gain of each label (0, 1 and, graded, 2 "
                                           "for a rating >= 4); None: LightGBM's 2^label - 1, i.e. 0, 1, 3")
    truncation_level: int = Field(20, ge=1, description="LambdaRank's truncation level: pairs are formed with the top "
                                  "this many of each query")
    blend_with: str | None = Field("ease", description="a generator whose normalised score the ranker's is blended "
                                   "with, by a weight chosen on the validation window (0 when that is best), when "
                                   "there is no refit (RecBole's protocol); None: no blend")
    engine: Literal["local", "dask"] = Field("local", description="local: lgb.train; dask: DaskLGBMRanker")
    dask_address: str | None = Field(None, description="a Dask scheduler; None: a LocalCluster")
    dask_workers: int = Field(2, ge=1, description="LocalCluster workers (one thread each)")

    @model_serializer(mode="wrap")
    def _omit_default_engine(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_defaults(self, handler(self), _ENGINE_KEYS)


_ENGINE_KEYS = ("engine", "dask_address", "dask_workers", "objective", "truncation_level", "label_gain")
"""Keys whose default is what configs without them always meant: left out of the dump at their default (run keys
and DVC hashes of existing configs stay). ``early_stopping`` and ``blend_with`` are always dumped: configs without
them meant early stopping and no blend, which are no longer the defaults."""


class TrainConfig(BaseModel):

    model_config = ConfigDict(extra="forbid")
    candidates: CandidateConfig = CandidateConfig()
    ranker: RankerConfig = RankerConfig()
    backtest: BacktestConfig = BacktestConfig()


class DriftConfig(BaseModel):
    """The drift check (``recsys drift``, params.yaml's ``drift`` section): the reference a bundle keeps, how a
    window of the traffic log is reduced, the distance per column type and the verdict's thresholds.

    The defaults are calibrated on the replay of MovieLens-100K (``benchmarks/drift_calibration.py``): windows of
    40 users, no false alarm over the verdicts of ten models' serving weeks, with a margin on each side.
    """

    model_config = ConfigDict(extra="forbid")

    reference_weeks: int = Field(4, ge=1, le=12, description="the reference replays the last N training weeks")
    reference_rows: int = Field(5000, ge=100, le=100_000, description="rows kept in the bundle's reference")
    per_user: int = Field(3, ge=1, description="requests kept per user, in the reference and in every window")
    max_rows: int = Field(5000, ge=100, le=100_000, description="rows of a window compared (a seeded sample)")
    min_rows: int = Field(400, ge=1, description="fewer rows in a window (after the cap): insufficient data")
    min_users: int = Field(40, ge=1, description="fewer distinct users in a window: insufficient data")
    num_method: str = Field("wasserstein", description="Evidently's method for numerical columns")
    num_threshold: float = Field(1.5, gt=0, description="a numerical feature drifts at this distance or more")
    history_threshold: float = Field(4.0, gt=0, description="the same for the user-history features (reported, "
                                     "not counted in the share)")
    cat_method: str = Field("jensenshannon", description="Evidently's method for categorical columns")
    cat_threshold: float = Field(0.5, gt=0, le=1, description="a categorical feature drifts at this distance or more")
    context_threshold: float = Field(0.2, gt=0, le=1, description="the context offsets' threshold (categorical)")
    score_threshold: float = Field(1.0, gt=0, description="the score (prediction) drifts at this distance or more")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-column thresholds that replace "
                                         "their type's (column name -> distance)")
    share_threshold: float = Field(0.01, gt=0, le=1, description="dataset drift when this share of the feature and "
                                   "context columns drifts (0.01: any one of the ~51)")
    score_alone: bool = Field(False, description="whether score drift alone is a dataset drift")
    seed: int = 0


class SynthParams(BaseModel):
    """A synthetic MovieLens (see :mod:`recsys.data.synth`)."""

    model_config = ConfigDict(extra="forbid")

    interactions: int = Field(gt=0, le=200_000_000, description="number of ratings to write")
    seed: int = Field(0, description="seed of every random draw (same seed, same files)")
    users: int | None = Field(None, gt=0, description="number of users; default: scaled like MovieLens")
    items: int | None = Field(None, gt=0, description="number of items; default: scaled like MovieLens")


class FittedStats(BaseModel):
    """What the generator took from the reference data (also the figures a synthetic set is checked against)."""

    rating_shares: list[float] = Field(description="P(rating = 1..5)")
    taste_share: float = Field(description="share of a user's ratings drawn from its favourite genre")
    user_bias_sd: float
    item_bias_sd: float
    popularity_gini: float = Field(description="Gini coefficient of ratings per item")
    activity_median: float = Field(description="median ratings per user")
    new_user_share: float = Field(description="share of users whose first rating is after week 0")
    new_item_share: float = Field(description="share of items whose first rating is after week 0")
