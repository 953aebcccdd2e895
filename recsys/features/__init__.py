"""Features for the ranker, built by one code path for training and for serving."""
