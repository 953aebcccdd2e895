"""recsys: a two-stage content recommender (candidate generators + LightGBM LambdaRank) on MovieLens-100K."""

__version__ = "0.1.0"
