"""The README's code is run, so what users copy works; and the README stays a short front
page: two commands, one kernel example on the light install, links to the docs.

The helpers that extract and run Markdown code blocks are tests/test_docs.py's.
"""

import os
import re

import test_docs as docs

README = os.path.join(docs.ROOT, "README.md")


def readme_text():
  return open(README, encoding="utf-8").read()


def test_readme_is_a_short_front_page():
  assert len(readme_text().splitlines()) <= 200


def test_readme_opens_with_the_two_commands():
  language, first_block, _ = docs.code_blocks("README.md")[0]
  assert language == "bash"
  assert first_block.strip().splitlines() == [
      'pip install ".[train]" && python -m experiments.train --config=configs/default.py '
      "--workdir=runs/default",
      'pip install ".[test]" && python -m pytest -q',
  ]


def test_kernel_example_runs_on_the_light_install():
  """The one python block: `from vae import kernels` with jax, numpy and optax only (the
  training dependencies cannot be imported in its process)."""
  blocks = docs.python_blocks("README.md")
  assert len(blocks) == 1 and len(blocks[0].strip().splitlines()) <= 20
  assert "from vae import kernels" in blocks[0]
  assert "kernels.elbo_batch(" in blocks[0] and "kernels.bound_gap_batch(" in blocks[0]
  [output] = docs.run_python_blocks(blocks, "README.md",
                                    blocked_modules=docs.TRAIN_ONLY_MODULES)
  docs.check_bound_line(output)  # ELBO < 0, IWAE_1000 < 0, gap >= 0, nats per example


def test_kernel_example_is_the_kernels_guides_first_block():
  assert docs.python_blocks("README.md")[0] == docs.python_blocks("docs/kernels.md")[0]


def test_readme_names_the_three_apps():
  text = readme_text()
  for app in ("train", "evaluate", "sweep"):
    assert f"vae-{app} " in text and f"python -m experiments.{app}" in text


def test_headline_figures_are_the_measured_ones():
  """The README's results row is the one docs/results/main_command.md records (and
  configs/default.py's docstring): test ELBO, log p(x), gap and wall time."""
  row = re.search(r"\| (−[\d.]+) \| (−[\d.]+) \| ([\d.]+) \| ([\d.]+) s / ([\d.]+) s \|",
                  readme_text()).groups()
  assert row == ("−107.3", "−101.9", "5.47", "33.0", "25.8")
  measured = open(os.path.join(docs.ROOT, "docs", "results", "main_command.md"),
                  encoding="utf-8").read()
  assert "| 6.8 s | 33.0 s | 45 s | −107.3 | −101.9 | 5.47 |" in measured
  assert "| 2.5 s | 25.8 s | | −107.3 | −101.9 | 5.47 |" in measured
  default = open(os.path.join(docs.ROOT, "configs", "default.py"), encoding="utf-8").read()
  assert "ELBO -107.3" in default and "-101.9" in default


def test_readme_links_every_guide():
  linked = set(re.findall(r"\]\((docs/[^)#]+)\)", readme_text()))
  guides = {p for p in docs.doc_pages() if p.count(os.sep) == 1 and p != "docs/index.md"}
  assert guides <= linked, sorted(guides - linked)
  assert {"docs/api/index.md", "docs/results/index.md"} <= linked
