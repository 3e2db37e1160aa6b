"""The peers' no-op tasks and how the benchmark drives them."""
