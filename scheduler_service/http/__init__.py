"""The scheduler's HTTP side: health, readiness and Prometheus metrics."""
