"""The stable endpoint in front of each pipeline's BentoML server, and its control client."""
