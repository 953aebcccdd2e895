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
