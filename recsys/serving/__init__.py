"""Framework-free serving runtime: model loading and hot swap, recommendations, A/B routing, feedback."""
