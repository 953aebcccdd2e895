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
from recsys.candidates.sessions import CoVisitation

__all__ = [
    "ALS",
    "EASE",
    "CandidateGenerator",
    "Candidates",
    "CoVisitation",
    "ItemKNN",
    "NewUserPopularity",
    "Popularity",
    "ProfilePopularity",
    "RecentItemKNN",
    "RecentPopularity",
]
