"""Candidate generators behind one interface (:class:`CandidateGenerator`)."""

from recsys.candidates.base import CandidateGenerator, Candidates
from recsys.candidates.factors import ALS
from recsys.candidates.neighbours import EASE, ItemKNN, RecentItemKNN
from recsys.candidates.popularity import (
    NewUserPopularity,
    Popularity,
    ProfilePopularity,
    RecentPopularity,
)

__all__ = [
    "ALS",
    "EASE",
    "CandidateGenerator",
    "Candidates",
    "ItemKNN",
    "NewUserPopularity",
    "Popularity",
    "ProfilePopularity",
    "RecentItemKNN",
    "RecentPopularity",
]
