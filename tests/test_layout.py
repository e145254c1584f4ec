"""The package's floors stay true: no import runs upward, and the kernels stay light.

Floors (vae/__init__.py lists them): 0 the kernels and vae.common, 1 models and data,
2 config, training, evaluation, sweeps, reporting and runtime, 3 the apps and the shipped
configs. A module may import its own package and any package of a lower floor; on floors 2
and 3 the packages may also import each other; on floors 0 and 1 they may not.
"""

import ast
import json
import os
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "vae"

FLOORS = {
    "vae.kernels": 0, "vae.common": 0,
    "vae.models": 1, "vae.data": 1,
    "vae.config": 2, "vae.training": 2, "vae.evaluation": 2, "vae.sweeps": 2,
    "vae.reporting": 2, "vae.runtime": 2,
    "vae.apps": 3, "vae.configs": 3,
}
PEERS_ALLOWED = {2, 3}
# What the kernels may import besides the standard library and themselves.
KERNEL_DEPENDENCIES = {"jax", "jaxlib", "numpy", "optax"}
HEAVY = ("flax", "orbax", "tensorflow_datasets", "tensorflow", "matplotlib", "tensorboardX",
         "ml_collections")


def package_of(module: str) -> str:
  """The floor package of a dotted module name of vae ("vae" itself for the top level)."""
  parts = module.split(".")
  return ".".join(parts[:2]) if len(parts) > 1 else module


def modules():
  """(dotted name, path) of every module under vae/, the linked apps and configs too."""
  for root, _, files in os.walk(PACKAGE, followlinks=True):
    for name in sorted(files):
      if name.endswith(".py"):
        path = pathlib.Path(root) / name
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
          parts = parts[:-1]
        yield ".".join(parts), path


def imports(path: pathlib.Path):
  """Every module name an import statement of the file names (inside functions too)."""
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      assert node.level == 0, f"{path}: relative import"
      yield node.module
      if node.module == "vae" or node.module in FLOORS:  # `from vae import data`
        yield from (f"{node.module}.{alias.name}" for alias in node.names)


def upward_imports():
  found = []
  for module, path in modules():
    own = package_of(module)
    if own == "vae":
      continue  # the top level re-exports the public API, lazily
    assert own in FLOORS, f"{path}: package {own} has no floor; add it to FLOORS"
    for name in imports(path):
      if not name.startswith("vae.") or package_of(name) == own:
        continue
      other = package_of(name)
      if other not in FLOORS:
        continue  # `from vae import kernels`-style names are checked as vae.kernels
      lower = FLOORS[other] < FLOORS[own]
      peer = FLOORS[other] == FLOORS[own] and FLOORS[own] in PEERS_ALLOWED
      if not (lower or peer):
        found.append(f"{module} (floor {FLOORS[own]}) imports {name} (floor {FLOORS[other]})")
  return found


def test_no_import_runs_upward_between_the_floors():
  assert upward_imports() == []


def test_the_check_finds_an_upward_import(tmp_path, monkeypatch):
  """The check is live: a kernel that imported the models would be reported."""
  bad = tmp_path / "bad.py"
  bad.write_text("from vae import models\nfrom vae.kernels import bounds\n")
  monkeypatch.setattr(sys.modules[__name__], "modules",
                      lambda: iter([("vae.kernels.bad", bad)]))
  assert upward_imports() == ["vae.kernels.bad (floor 0) imports vae.models (floor 1)"]


def test_every_package_says_its_job_and_what_it_may_import():
  for package in FLOORS:
    init = PACKAGE / package.split(".")[1] / "__init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
    assert len(docstring) > 80, f"{init}: no docstring"
    if package not in ("vae.apps", "vae.configs"):
      assert "import" in docstring.lower(), f"{init}: does not say what it may import"


def test_the_kernels_import_only_jax_numpy_optax_and_themselves():
  allowed = KERNEL_DEPENDENCIES | set(sys.stdlib_module_names)
  for module, path in modules():
    if package_of(module) != "vae.kernels":
      continue
    for name in imports(path):
      top = name.split(".")[0]
      assert top in allowed or name.startswith("vae.kernels"), f"{module} imports {name}"


def test_importing_the_kernels_loads_no_trainer_dependency():
  code = ("import json, sys; import vae.kernels; "
          "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=PACKAGE.parent, timeout=300, check=True)
  loaded = set(json.loads(done.stdout))
  assert "jax" in loaded and not loaded & set(HEAVY), loaded & set(HEAVY)
