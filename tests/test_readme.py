"""The README's code is run, so what users copy works."""

import contextlib
import io
import os
import re

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_reuse_example_runs_and_prints_a_finite_bound():
  text = open(README).read()
  example = re.search(r"## Reusing the loss.*?```python\n(.*?)```", text, re.S).group(1)
  assert len(example.strip().splitlines()) <= 20
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(example, "README.md", "exec"), {})
  elbo, log_px, gap = (float(v) for v in out.getvalue().split())
  assert elbo < 0 and log_px < 0 and gap >= 0
  assert log_px >= elbo - 1.0


def test_posterior_and_prior_example_runs_after_the_first():
  section = re.search(r"## Reusing the loss(.*?)\n## ", open(README).read(), re.S).group(1)
  first, second, _ = re.findall(r"```python\n(.*?)```", section, re.S)
  assert len(second.strip().splitlines()) <= 15
  namespace, out = {}, io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(first, "README.md", "exec"), namespace)
    out.truncate(0)
    out.seek(0)
    exec(compile(second, "README.md", "exec"), namespace)
  elbo, log_px, gap = (float(v) for v in out.getvalue().split())
  assert elbo < 0 and log_px < 0 and gap >= 0
  assert log_px >= elbo - 1.0


def test_nnx_example_trains_a_flax_nnx_module_with_the_kernels():
  section = re.search(r"## Reusing the loss(.*?)\n## ", open(README).read(), re.S).group(1)
  first, _, nnx_example = re.findall(r"```python\n(.*?)```", section, re.S)
  assert len(nnx_example.strip().splitlines()) <= 20
  namespace, out = {}, io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(first, "README.md", "exec"), namespace)
    out.truncate(0)
    out.seek(0)
    exec(compile(nnx_example, "README.md", "exec"), namespace)
  first_loss, second_loss = (float(v) for v in out.getvalue().split())
  assert 0 < second_loss < first_loss  # -ELBO in nats per example, falling after one step


def test_readme_opens_with_the_two_commands():
  first_block = re.search(r"```bash\n(.*?)```", open(README).read(), re.S).group(1)
  assert first_block.strip().splitlines() == [
      "pip install . && python -m experiments.train --config=configs/default.py "
      "--workdir=runs/default",
      'pip install ".[test]" && python -m pytest -q',
  ]
