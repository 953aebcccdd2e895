"""Matrix factorisation: implicit-feedback ALS (Hu, Koren and Volinsky, 2008) from the ``implicit`` library.

Its cost is linear in interactions and in users + items (factors x (users + items) memory), so it is the
personalised generator that still fits at ML-25M's 60k items, where EASE's items x items inverse does not.
Fitting needs ``implicit`` (training only); scoring is one matrix product, so a serving process never imports it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recsys.candidates.base import CandidateGenerator
from recsys.data.matrix import InteractionData


class ALS(CandidateGenerator):
    """score(u, j) = user_factors[u] . item_factors[j], fitted with confidence 1 + ``alpha`` per interaction."""

    name = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 2.0, iterations: int = 15,
                 seed: int = 0) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {"factors": self.factors, "regularization": self.regularization, "alpha": self.alpha,
                "iterations": self.iterations, "seed": self.seed}

    _state_names: ClassVar[tuple[str, ...]] = ("user_factors_", "item_factors_")

    def _fit(self, data: InteractionData) -> None:
        from recsys.candidates.als_training import fit_als

        self.user_factors_, self.item_factors_ = fit_als(data.matrix, self.factors, self.regularization,
                                                         self.alpha, self.iterations, self.seed)

    def _score_known(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors_[rows] @ self.item_factors_.T)
