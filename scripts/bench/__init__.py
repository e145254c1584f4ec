"""The parts of scripts/benchmark.py, one job each."""
