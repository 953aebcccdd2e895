"""Online experiments: attribution of feedback to impressions, A/B statistics, and the replay traffic simulator."""
