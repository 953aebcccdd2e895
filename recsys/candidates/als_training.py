"""The ``implicit`` call behind :class:`recsys.candidates.factors.ALS` (training only: serving never imports it)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def fit_als(matrix: sp.csr_matrix, factors: int, regularization: float, alpha: float, iterations: int,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) of implicit's CPU ALS on a users x items 0/1 matrix, as float64 (a batch and a
    single user then score alike: float32 products differ between BLAS kernels)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                    iterations=iterations, random_state=seed, num_threads=0)
    with threadpool_limits(1, "blas"):  # implicit parallelises over users itself; BLAS threads would oversubscribe
        model.fit(matrix.tocsr().astype(np.float32), show_progress=False)
    return (np.ascontiguousarray(model.user_factors, dtype=np.float64),
            np.ascontiguousarray(model.item_factors, dtype=np.float64))
