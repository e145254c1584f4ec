"""The benchmark's targets, each with its measured value and verdict, and its tables."""

from __future__ import annotations

from typing import Any

from scripts import benchmark_sweep
from scripts.bench.subjects import MLP_MODELS, MODELS


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
  """The issue's targets on this machine, each with its measured value and verdict."""
  found = []

  def add(name, value, threshold, met, detail):
    found.append(dict(target=name, value=value, threshold=threshold, met=bool(met),
                      detail=detail))

  for row in results["training"]:
    where = f"{row['model']}, batch {row['batch_size']}"
    ratio = row["trainer_vs_yardstick"]
    if ratio is not None:
      add("trainer >= 90% of the yardstick", ratio, 0.9, ratio >= 0.9, where)
    if row["model"] in MLP_MODELS and row["batch_size"] >= 256:
      fraction = row["trainer"]["roofline_fraction"]
      add("MLP trainer >= 80% of the roofline (batch >= 256)", fraction, 0.8,
          fraction >= 0.8, where)
  for row in results["iwae"]:
    if row["model"] == "mlp_400_20":
      minutes = row["projected_10000_s"] / 60
      add("IWAE K=5000, 10,000 images, 784-400-20: < 10 min", minutes, 10.0, minutes < 10,
          f"K={row['num_importance_samples']}, measured on {row['num_examples']} images")
      add("IWAE K=5000, 784-400-20: peak memory < 2 GiB", row["peak_rss_mib"], 2048.0,
          row["peak_rss_mib"] < 2048, f"K={row['num_importance_samples']}")
  for row in results["main_command"]:
    if row["config"] == "default" and row["cache"] == "warm":
      add("time to the first training step, warm caches: <= 3 s", row["first_step_s"], 3.0,
          row["first_step_s"] <= 3.0, "configs/default.py")
    if row["config"] == "default" and row["cache"] == "cold":
      add("README main command, first run: <= 45 s", row["seconds"], 45.0,
          row["seconds"] <= 45.0, "configs/default.py, empty caches")
    steady = [r for r in results["training"] if r["model"] == row["config"]
              and r["batch_size"] == MODELS[row["config"]][1]().train.batch_size]
    if steady:
      steady_steps = steady[0]["trainer"]["examples_per_s"] / steady[0]["batch_size"]
      ratio = row["median_steps_per_s"] / steady_steps
      add("main command's progress steps/s within 10% of the steady state", ratio, 0.9,
          ratio >= 0.9, f"{row['median_steps_per_s']:.0f} against {steady_steps:.0f} "
          "steps/s")
  for row in results["sweep"]:
    if row["num_points"] == 8:
      add("vectorised 8-point sweep >= 1.5x sequential", row["speedup"], 1.5,
          row["speedup"] >= 1.5, f"batch {row['batch_size']}, {row['num_steps']} steps")
  return found


def _mib(value: float) -> str:
  return f"{value:,.0f}"


def markdown(results: dict[str, Any]) -> str:
  """The figures as Markdown tables."""
  machine = results["machine"]
  lines = [f"Machine: {machine['cpu']}, {machine['cpu_count']} CPU cores; jax "
           f"{machine['jax']}, flax {machine['flax']}, optax {machine['optax']}; load "
           f"average {machine['load_average_before'][0]:.2f} before, "
           f"{machine['load_average_after'][0]:.2f} after. Command: `{results['command']}`",
           ""]
  if results["training"]:
    lines += [
        f"Training, examples/s (median of {results['settings']['repeats']} repeats after "
        "warm-up). Trainer: `make_train_block`, T steps per call (and 1 step per call). "
        "Yardstick: hand-written jnp step, 1 step per call. Roofline: the step's matmuls "
        "and convolutions alone. Memory: peak RSS of a fresh process after the trainer.",
        "",
        "| model | batch | T | trainer | trainer, 1 step/call | yardstick | trainer / "
        "yardstick | GFLOP/step | trainer GFLOP/s | roofline GFLOP/s | trainer % roofline "
        "| yardstick % roofline | compile (s) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["training"]:
      yardstick = r["yardstick"]
      lines.append(
          f"| {r['model']} | {r['batch_size']} | {r['steps_per_dispatch']} | "
          f"{r['trainer']['examples_per_s']:,.0f} | "
          f"{r['trainer_dispatch1']['examples_per_s']:,.0f} | "
          + (f"{yardstick['examples_per_s']:,.0f} | {r['trainer_vs_yardstick']:.2f} | "
             if yardstick else "– | – | ")
          + f"{r['flops_per_step'] / 1e9:.3g} | {r['trainer']['gflops']:.1f} | "
          f"{r['roofline']['gflops']:.1f} | "
          f"{100 * r['trainer']['roofline_fraction']:.0f}% | "
          + (f"{100 * yardstick['roofline_fraction']:.0f}% | " if yardstick else "– | ")
          + f"{r['trainer']['compile_s']:.1f} | {_mib(r['peak_rss_mib_trainer'])} |")
    lines.append("")
  if results["iwae"]:
    lines += ["IWAE evaluation (`Evaluator.evaluate` of random-init params on test images "
              "tiled to N, after one warm-up batch; 10,000 images = compilation + 10,000 / "
              "throughput; roofline: the evaluation's matmuls and convolutions alone):", "",
              "| model | K | N | batch x chunk | examples/s | GFLOP/example | GFLOP/s | "
              "% roofline | compile (s) | 10,000 images (min) | peak RSS (MiB) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["iwae"]:
      lines.append(
          f"| {r['model']} | {r['num_importance_samples']} | {r['num_examples']:,} | "
          f"{r['batch_size']} x {r['chunk_size']} | {r['examples_per_s']:.2f} | "
          f"{r['gflop_per_example']:.3g} | {r['gflops']:.1f} | "
          f"{100 * r['roofline_fraction']:.0f}% | {r['compile_s']:.1f} | "
          f"{r['projected_10000_s'] / 60:.1f} | {_mib(r['peak_rss_mib'])} |")
    lines.append("")
  if results["sweep"]:
    lines += ["Beta sweep, whole wall time including compilation, each mode in a fresh "
              f"process (base: configs/{results['settings']['sweep_base']}.py):", ""]
    lines += benchmark_sweep.markdown_table(results["sweep"]) + [""]
  if results["main_command"]:
    lines += [f"Main command (`{results['main_command'][0]['command']}`, a fresh process "
              "with its logging, evaluations and checkpoints), with empty compilation and "
              "data caches and then with those the first run left:", "",
              "| caches | whole command (s) | first step after (s) | progress steps/s |",
              "|---|---|---|---|"]
    lines += [f"| {r['cache']} | {r['seconds']:.1f} | {r['first_step_s']:.1f} | "
              f"{r['median_steps_per_s']:.1f} |" for r in results["main_command"]] + [""]
  if results["data_parallel"]:
    lines += ["Data-parallel training (`make_train_block`, batch sharded over "
              "`--xla_force_host_platform_device_count` CPU devices):", "",
              "| model | devices | batch | examples/s |", "|---|---|---|---|"]
    for r in results["data_parallel"]:
      lines.append(f"| {r['model']} | {r['device_count']} | {r['batch_size']} | "
                   f"{r['examples_per_s']:,.0f} |")
    lines.append("")
  if results["targets"]:
    lines += ["| target | where | measured | met |", "|---|---|---|---|"]
    for t in results["targets"]:
      lines.append(f"| {t['target']} | {t['detail']} | {t['value']:.3g} | "
                   f"{'yes' if t['met'] else 'NO'} |")
  return "\n".join(lines) + "\n"
