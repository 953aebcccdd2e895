"""The LightGBM LambdaRank stage and the two-stage :class:`Recommender`."""
