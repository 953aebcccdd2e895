"""One vocabulary of column names and frame schemas, shared by every stage."""

from __future__ import annotations

USER = "user_id"
ITEM = "item_id"
RATING = "rating"
TS = "timestamp"
WEEK = "week"

AGE = "age"
GENDER = "gender"
OCCUPATION = "occupation"
ZIP = "zip"
TITLE = "title"
RELEASE_YEAR = "release_year"
GENRES = "genres"

SCORE = "score"
RANK = "rank"
LABEL = "label"
QUERY = "query_id"

INTERACTION_DTYPES: dict[str, str] = {USER: "int32", ITEM: "int32", RATING: "float32", TS: "int64"}
USER_DTYPES: dict[str, str] = {USER: "int32", AGE: "int16", GENDER: "category", OCCUPATION: "category", ZIP: "string"}
ITEM_COLUMNS: tuple[str, ...] = (ITEM, TITLE, RELEASE_YEAR, GENRES)

PROFILE_FIELDS: tuple[str, ...] = (AGE, GENDER, OCCUPATION, ZIP)

# -- names shared by training, the registry and serving ------------------------------------------------------
K = 10
"""The cut-off of every ranking metric (NDCG@10, ...) and the default list length."""
DEFAULT_MODEL_NAME = "content-ranker"
"""The registered model's name (and its MLflow experiment's)."""
CHAMPION = "champion"
"""The registry alias of the model that serves; every request falls back to it."""
CHALLENGER = "challenger"
"""The registry alias of the newest registered model, waiting for the gate."""
