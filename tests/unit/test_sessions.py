"""Session signals: latest items, co-visitation counts and the co-visitation generator, against textbook loops."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys import schema as S
from recsys.candidates.sessions import CoVisitation, covisit_counts, latest_items, latest_matrix, pair_values
from recsys.data.matrix import InteractionData


def random_last_ts(seed: int, users: int = 30, items: int = 25, density: float = 0.3) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((users, items)) < density, rng.integers(1, 40, (users, items)), 0)  # ties on purpose
    return sp.csr_matrix(dense.astype(np.float64))


def textbook_sequences(last_ts: sp.csr_matrix) -> list[list[int]]:
    """Each user's columns, latest first, ties by lower column."""
    dense = last_ts.toarray()
    return [sorted(np.nonzero(row)[0].tolist(), key=lambda c, row=row: (-row[c], c)) for row in dense]


def test_latest_items_are_each_users_sequence_latest_first() -> None:
    last_ts = random_last_ts(0)
    sequences = textbook_sequences(last_ts)
    rows, cols, pos = latest_items(last_ts)
    got = [[] for _ in sequences]
    for r, c, p in zip(rows, cols, pos, strict=True):
        assert p == len(got[r])
        got[r].append(int(c))
    assert got == sequences
    top = latest_matrix(last_ts, 4)
    for r, seq in enumerate(sequences):
        assert top[r].tolist() == (seq[:4] + [-1] * 4)[:4]


def test_covisit_counts_match_the_pairs_within_the_window() -> None:
    last_ts = random_last_ts(1)
    n = last_ts.shape[1]
    for window in (1, 3):
        expected = np.zeros((n, n))
        for seq in textbook_sequences(last_ts):
            for i, j in itertools.combinations(range(len(seq)), 2):
                if j - i <= window:
                    expected[seq[i], seq[j]] += 1
                    expected[seq[j], seq[i]] += 1
        got = covisit_counts(last_ts, window).toarray()
        np.testing.assert_array_equal(got, expected)
        assert np.all(np.diag(got) == 0)


def test_pair_values_reads_cells_and_marks_missing_rows() -> None:
    m = sp.csr_matrix(np.array([[0.0, 2.0], [3.0, 0.0]]))
    out = pair_values(m, np.array([0, 1, -1, 1]), np.array([1, 0, 0, 1]))
    assert out[:2].tolist() == [2.0, 3.0] and np.isnan(out[2]) and out[3] == 0.0


def test_covisitation_proposes_what_followed_the_users_last_item() -> None:
    """Users 1..4 watched A then B (then others); user 5's last item is A: B comes first, though item-kNN over
    whole histories would favour C, which user 5 and many others saw long before."""
    a, b, c, d = 10, 11, 12, 13
    rows = []
    for u in (1, 2, 3, 4):
        rows += [(u, c, 100), (u, d, 200), (u, a, 1000), (u, b, 1001)]
    rows += [(6, c, 100), (6, d, 150), (7, c, 100), (7, d, 120)]
    rows += [(5, d, 100), (5, a, 900)]
    inter = pd.DataFrame(rows, columns=[S.USER, S.ITEM, S.TS])
    inter[S.RATING] = 4
    items = pd.DataFrame({S.ITEM: [a, b, c, d, 14]})
    users = pd.DataFrame({S.USER: range(1, 8)})
    data = InteractionData(inter, items, users, now=2000)
    gen = CoVisitation(window=1, recent_items=1).fit(data)
    assert gen.candidates(5, 1).items.tolist() == [b]
