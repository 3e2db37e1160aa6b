"""Benchmarks: ``python -m bench`` compares this scheduler with peers side by side; the
scripts beside it measure one thing each (store scale, durability, faults, soak)."""
