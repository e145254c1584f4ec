"""The documentation's code is run, so what users copy works.

Every ```python block in docs/**/*.md runs: a page's blocks in order, in one namespace, in
one fresh process (as a reader pastes them into one session), and each block's printed
output goes to that page's check in CHECKS. A page with python blocks and no check fails,
so a new example cannot go untested. A ```bash block right after the line
`<!-- docs-test: run -->` runs as well, in a fresh folder, and RUN_CHECKS checks it. Blocks
not meant to run use another fence language (console, text). Relative links must point at
files that exist. tests/test_readme.py runs README.md's example through the same helpers.
"""

import ast
import glob
import json
import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_MARKER = "<!-- docs-test: run -->"
# What `pip install ".[train]"` adds to the light install (jax, numpy, optax).
TRAIN_ONLY_MODULES = ("flax", "orbax", "tensorflow", "tensorflow_datasets", "ml_collections",
                      "tensorboardX", "matplotlib", "PIL", "sklearn", "mlxtend")


# ------------------------------------------------------------------ reading the pages


def doc_pages():
  """docs/**/*.md, relative to the repository root."""
  return sorted(os.path.relpath(p, ROOT)
                for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))


def code_blocks(page):
  """[(language, source, marked_to_run)] of the fenced blocks of `page` (relative to the
  repository root), in order; indented fences (in list items) are dedented."""
  blocks, lines, i = [], open(os.path.join(ROOT, page), encoding="utf-8").read().split("\n"), 0
  previous = ""
  while i < len(lines):
    opening = re.match(r"^(\s*)(`{3,})([\w+-]*)\s*$", lines[i])
    if not opening:
      if lines[i].strip():
        previous = lines[i].strip()
      i += 1
      continue
    indent, fence, language = opening.groups()
    body, i = [], i + 1
    while i < len(lines) and not re.match(r"^\s*" + fence + r"`*\s*$", lines[i]):
      body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
      i += 1
    assert i < len(lines), f"{page}: a code block is not closed"
    blocks.append((language, "\n".join(body) + "\n", previous == RUN_MARKER))
    previous, i = "", i + 1
  return blocks


def python_blocks(page):
  return [source for language, source, _ in code_blocks(page) if language == "python"]


def run_python_blocks(blocks, origin, blocked_modules=()):
  """Runs `blocks` in order in one namespace in a fresh Python process and returns what
  each printed. `blocked_modules` cannot be imported there (as after the light install)."""
  driver = r"""
import contextlib, io, json, sys
task = json.load(sys.stdin)
blocked = set(task["blocked"])

class NotInstalled:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in blocked:
      raise ModuleNotFoundError(f"No module named {name!r} (not in the light install)")
    return None

sys.meta_path.insert(0, NotInstalled())
namespace, outputs = {"__name__": "__main__"}, []
for index, source in enumerate(task["blocks"]):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(source, f"{task['origin']} (python block {index})", "exec"), namespace)
  outputs.append(out.getvalue())
sys.stdout.write("\n" + json.dumps(outputs))
"""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, "-c", driver], cwd=ROOT, env=env, capture_output=True, text=True,
      input=json.dumps({"blocks": blocks, "origin": origin, "blocked": list(blocked_modules)}),
      timeout=600)
  assert result.returncode == 0, f"{origin}'s code failed:\n{result.stderr[-3000:]}"
  return json.loads(result.stdout.rstrip().rsplit("\n", 1)[-1])


def numbers(output):
  """The floats one block printed."""
  return [float(word) for word in output.split()]


# ------------------------------------------------------------------ each page's checks


def check_bound_line(output):
  """ELBO, IWAE_K and their gap of a batch, nats per example."""
  elbo, log_px, gap = numbers(output)
  assert elbo < 0 and log_px < 0 and gap >= 0
  assert log_px >= elbo - 1.0


def check_kernels_page(outputs):
  assert len(outputs) == 3
  check_bound_line(outputs[0])   # the diagonal Gaussian
  check_bound_line(outputs[1])   # a full-covariance q with a VampPrior
  first_loss, second_loss = numbers(outputs[2])  # -ELBO of an NNX module, one Adam step apart
  assert 0 < second_loss < first_loss


def check_collapse_page(outputs):
  assert len(outputs) == 1
  lines = [numbers(line) for line in outputs[0].strip().splitlines()]
  (kl_summed, kl_closed_form), (mi, marginal, mc_kl), (free_bits, kl) = lines
  assert kl_summed > 0 and math.isclose(kl_summed, kl_closed_form, rel_tol=1e-4)
  assert -0.5 <= mi <= math.log(32) + 0.5   # I(x; z) in [0, log N], up to its error
  assert math.isclose(mi + marginal, mc_kl, rel_tol=1e-4, abs_tol=1e-4)
  assert free_bits >= kl - 1e-5 and math.isclose(kl, kl_summed, rel_tol=1e-4)


def check_evaluation_page(outputs):
  assert len(outputs) == 1
  bounds_line, shapes_line = outputs[0].strip().splitlines()
  elbo, log_px, gap = numbers(bounds_line)  # means over 100 test digits, nats
  assert elbo < log_px < 0 and math.isclose(gap, log_px - elbo, rel_tol=1e-4)
  assert shapes_line == "(100, 4) (16, 8, 8, 1) (100, 8, 8, 1)"


CHECKS = {
    "docs/evaluation.md": check_evaluation_page,
    "docs/kernels.md": check_kernels_page,
    "docs/collapse.md": check_collapse_page,
}


def check_tiny_run(folder, stdout):
  """`vae-train --config=tiny --workdir=runs/tiny` from an empty folder."""
  records = [json.loads(line) for line in
             open(os.path.join(folder, "runs", "tiny", "metrics.jsonl"), encoding="utf-8")]
  test = [r for r in records if r["split"] == "test"][-1]
  assert test["step"] == 20
  for key in ("reconstruction", "kl", "elbo", "log_px", "bound_gap"):
    assert math.isfinite(test[key]), key
  assert test["kl"] >= 0 and test["elbo"] < 0
  assert math.isclose(test["bound_gap"], test["log_px"] - test["elbo"], abs_tol=1e-3)


RUN_CHECKS = {
    ("docs/training.md", 0): check_tiny_run,
}


# ------------------------------------------------------------------ the tests


def test_every_page_with_python_has_a_check():
  with_python = {page for page in doc_pages() if python_blocks(page)}
  assert with_python == set(CHECKS)


@pytest.mark.parametrize("page", sorted(CHECKS))
def test_python_blocks_run_and_print_what_the_page_says(page):
  CHECKS[page](run_python_blocks(python_blocks(page), page))


def marked_bash_blocks():
  return [(page, index, source) for page in doc_pages()
          for index, source in enumerate(
              s for language, s, run in code_blocks(page) if language == "bash" and run)]


def test_every_marked_bash_block_has_a_check():
  assert {(page, index) for page, index, _ in marked_bash_blocks()} == set(RUN_CHECKS)


@pytest.mark.parametrize("page, index", sorted(RUN_CHECKS))
def test_marked_bash_blocks_run(page, index, tmp_path):
  source = [s for p, i, s in marked_bash_blocks() if (p, i) == (page, index)][0]
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
  result = subprocess.run(["bash", "-euo", "pipefail", "-c", source], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, f"{page}'s bash block {index} failed:\n{result.stderr[-3000:]}"
  RUN_CHECKS[(page, index)](str(tmp_path), result.stdout)


def relative_links(page):
  """The targets of the Markdown links and images of `page` that are relative paths."""
  text = open(os.path.join(ROOT, page), encoding="utf-8").read()
  text = re.sub(r"```.*?```", "", text, flags=re.S)  # not in code
  targets = re.findall(r"\]\(([^)\s]+)\)", text)
  return [t.split("#")[0] for t in targets
          if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", ["README.md", "CHANGELOG.md"] + doc_pages())
def test_relative_links_point_at_files(page):
  folder = os.path.dirname(os.path.join(ROOT, page))
  missing = [t for t in relative_links(page) if not os.path.exists(os.path.join(folder, t))]
  assert not missing, f"{page} links to missing files: {missing}"


def test_every_results_page_states_commit_command_and_machine():
  pages = [p for p in doc_pages() if p.startswith(os.path.join("docs", "results", ""))
           and not p.endswith("index.md")]
  assert len(pages) >= 15
  index = open(os.path.join(ROOT, "docs", "results", "index.md"), encoding="utf-8").read()
  for page in pages:
    text = open(os.path.join(ROOT, page), encoding="utf-8").read()
    commit = re.search(r"\*\*Commit\*\*: `([0-9a-f]{7})`", text)
    assert commit, f"{page} names no commit"
    assert "**Command**" in text and "**Machine**" in text and "2 CPU cores" in text, page
    assert os.path.basename(page) in index, f"docs/results/index.md does not list {page}"


def top_level_names(path):
  """The names a module defines or imports at its top level, and those it loads on first
  use (the keys of a module-level `_LAZY` dict, as `vae/__init__.py` has)."""
  names = set()
  for node in ast.parse(open(path, encoding="utf-8").read()).body:
    if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets]
        == ["_LAZY"] and isinstance(node.value, ast.Dict)):
      names.update(key.value for key in node.value.keys)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      names.add(node.name)
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      names.update(t.id for t in targets if isinstance(t, ast.Name))
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      names.update((a.asname or a.name).split(".")[0] for a in node.names)
  return names


def module_path_exists(dotted):
  """`vae.a.b` is a package or module of the checkout, or a name defined in one."""
  parts = dotted.split(".")
  for cut in range(len(parts), 0, -1):
    base = os.path.join(ROOT, *parts[:cut])
    if os.path.isdir(base) or os.path.exists(base + ".py"):
      if cut == len(parts):
        return True
      source = os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py"
      return cut == len(parts) - 1 and parts[cut] in top_level_names(source)
  return False


def test_module_paths_in_the_docs_exist():
  """Every `vae.a.b` that README.md and the docs name outside code blocks is a module of
  the layout, or a name one defines."""
  named = set()
  for page in ["README.md"] + doc_pages():
    text = open(os.path.join(ROOT, page), encoding="utf-8").read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    named.update(re.findall(r"\bvae(?:\.[A-Za-z_]\w*)+", text))
  assert len(named) > 20
  assert not [m for m in sorted(named) if not module_path_exists(m)]


def test_api_reference_covers_every_module():
  """docs/api/ renders every module of the package (the apps and the shipped configs are
  documented by the guides)."""
  rendered = set()
  for page in glob.glob(os.path.join(ROOT, "docs", "api", "*.md")):
    rendered.update(re.findall(r"^::: (vae[\w.]*)\s*$", open(page, encoding="utf-8").read(), re.M))
  modules = set()
  for folder, subfolders, files in os.walk(os.path.join(ROOT, "vae")):
    subfolders[:] = [s for s in subfolders if not os.path.islink(os.path.join(folder, s))
                     and s != "__pycache__"]
    package = os.path.relpath(folder, ROOT).replace(os.sep, ".")
    modules.update(package if f == "__init__.py" else f"{package}.{f[:-3]}"
                   for f in files if f.endswith(".py") and not f[:-3].startswith("_")
                   or f == "__init__.py")
  assert modules - {"vae"} <= rendered, sorted(modules - {"vae"} - rendered)
