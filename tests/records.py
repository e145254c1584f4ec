"""Comparing two runs' metrics.jsonl records."""

import pytest


def assert_same_metrics(got: list[dict], want: list[dict], tolerance: float = 1e-4) -> None:
  """The same (step, split) records with the same fields; numbers equal within
  `tolerance` (relative and absolute), labels (e.g. "params") exactly. steps_per_sec,
  a speed, is left out."""
  assert [(r["step"], r["split"]) for r in got] == [(r["step"], r["split"]) for r in want]
  for g, w in zip(got, want):
    assert g.keys() == w.keys()
    for key in w.keys() - {"step", "split", "steps_per_sec"}:
      if isinstance(w[key], str):
        assert g[key] == w[key], (key, g, w)
      else:
        assert g[key] == pytest.approx(w[key], rel=tolerance, abs=tolerance), (key, g, w)
