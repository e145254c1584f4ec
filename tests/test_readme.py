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


def run_after_the_first(index, max_lines):
  """The printed words of the reuse section's block `index`, run after its first block."""
  section = re.search(r"## Reusing the loss(.*?)\n## ", open(README).read(), re.S).group(1)
  blocks = re.findall(r"```python\n(.*?)```", section, re.S)
  assert len(blocks) == 3 and len(blocks[index].strip().splitlines()) <= max_lines
  namespace, out = {}, io.StringIO()
  exec(compile(blocks[0], "README.md", "exec"), namespace)  # its print goes to pytest
  with contextlib.redirect_stdout(out):
    exec(compile(blocks[index], "README.md", "exec"), namespace)
  return out.getvalue().split()


def test_posterior_and_prior_example_runs_after_the_first():
  elbo, log_px, gap = (float(v) for v in run_after_the_first(1, max_lines=15))
  assert elbo < 0 and log_px < 0 and gap >= 0
  assert log_px >= elbo - 1.0


def test_nnx_example_trains_a_flax_nnx_module_with_the_kernels():
  first_loss, second_loss = (float(v) for v in run_after_the_first(2, max_lines=20))
  assert 0 < second_loss < first_loss  # -ELBO in nats per example, falling after one step


def test_readme_opens_with_the_two_commands():
  first_block = re.search(r"```bash\n(.*?)```", open(README).read(), re.S).group(1)
  assert first_block.strip().splitlines() == [
      "pip install . && python -m experiments.train --config=configs/default.py "
      "--workdir=runs/default",
      'pip install ".[test]" && python -m pytest -q',
  ]
