r"""Throughput, compile time and memory of training, evaluation and sweeps on this machine.

  python scripts/benchmark.py [--output=runs/benchmark.json]   # 15-20 min on 2 cores
  python scripts/benchmark.py --quick                          # smoke test, < 1 min

Writes the figures to --output (JSON) and the tables to the same path with `.md`, and
prints the tables. For each model (the default config; Burda et al.'s 784-200-200-50
tanh MLP; the tutorials' 784-400-20 relu MLP; the MNIST conv config) and batch size:

* training throughput of the library's own jitted block (`vae.train.make_train_block`,
  state stacked over one run as `vae.train.train_vectorized` builds it), examples/s in
  the steady state: the median over --repeats of the mean time per call, after warm-up;
  with T = the config's `steps_per_dispatch` steps per call (fewer for big batches, see
  --max_examples_per_call) and with 1 step per call (the dispatch overhead);
* the same for a yardstick: a minimal hand-written step of the same model (plain `jnp`
  matmuls or `lax` convolutions, single-sample ELBO, `optax.adam`, jitted with donation,
  no Flax, no metrics), one step per call;
* FLOPs of a step: 2 * multiply-adds of every matmul and convolution of the forward and
  backward pass (`dot_general` and `conv_general_dilated` in the jaxpr of the trainer's
  `value_and_grad`; the holes of dilated convolutions are not counted, as in XLA's cost
  analysis), and the roofline: exactly those matmuls and convolutions replayed alone in
  one jitted program on random operands (no model, no elementwise work), timed the same
  way but waiting for every call. GFLOP/s = FLOPs per step / seconds per step;
  "% roofline" = GFLOP/s / roofline GFLOP/s (a pipelined step can pass 100% where the
  roofline's calls are short);
* compile time (first call minus a steady call) and peak resident memory (ru_maxrss) of
  a fresh process per (model, batch size), taken after the trainer's first calls.

Then, each in a fresh process of its own:

* IWAE log p(x) evaluation with `vae.evaluate.Evaluator` at K = 5000 (random-init params;
  the speed does not depend on the weights) on test images of the embedded MNIST tiled
  to N, after one warm-up batch: examples/s, GFLOP/s against the roofline of the
  evaluation's own matmuls, compile time, the projected time for 10,000 images
  (compilation + 10,000 / throughput) and peak memory;
* the vectorised beta sweep (`scripts/benchmark_sweep.py`: N points in one program)
  against the same points one after another, whole wall time including compilation,
  each mode in a fresh process;
* data-parallel training of 784-400-20 on 1 and 2 host devices
  (XLA_FLAGS=--xla_force_host_platform_device_count=N, the batch sharded over "data");
* the README's main command (`experiments.train` on configs/default.py, with its
  logging, evaluations and checkpoints): wall time, and the median steps/s of its
  progress lines against the trainer's steady state at the same batch size.

--quick runs every section on one model, batch 8, one repeat, K = 20, a one-point
sweep and the main command on configs/tiny.py, in this process where it can and with XLA's optimisations off:
it checks that the script works (tests/test_benchmark.py), its figures mean nothing.

The figures are wall-clock times: other processes on the machine slow them down (the
JSON records the load average before and after).
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

_SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_SCRIPTS))
sys.path.insert(0, _SCRIPTS)

import jax  # noqa: E402
import jax.extend  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import benchmark_sweep  # noqa: E402
from configs import default, mnist_conv, mnist_mlp, tiny  # noqa: E402
from vae import cli, data, distributed, evaluate, train  # noqa: E402
from vae.models import build_model  # noqa: E402

FLAGS = flags.FLAGS
IMAGE_SHAPE = (28, 28, 1)
MIB = 2**20

# ------------------------------------------------------------------ the models


def _mlp_400_20() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.hidden_sizes = (400,)
  config.model.latent_dim = 20
  config.model.activation = "relu"
  config.model.likelihood = "bernoulli"
  return config


MODELS: dict[str, tuple[str, Callable[[], ml_collections.ConfigDict]]] = {
    "default": ("configs/default.py: MLP 784-512-256-16 relu", default.get_config),
    "burda_mlp": ("configs/mnist_mlp.py: MLP 784-200-200-50 tanh", mnist_mlp.get_config),
    "mlp_400_20": ("MLP 784-400-20 relu (the tutorials' VAE)", _mlp_400_20),
    "mnist_conv": ("configs/mnist_conv.py: 2 stride-2 convs, 32 latents",
                   mnist_conv.get_config),
}
"""name -> (description, config factory); every model is Bernoulli on 28x28x1 images."""

MLP_MODELS = ("default", "burda_mlp", "mlp_400_20")


# ------------------------------------------------------------------ timing


def peak_rss_mib() -> float:
  """Peak resident memory of this process so far (ru_maxrss), in MiB."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / MIB if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def time_calls(subjects: dict[str, Callable[[], Any]], repeats: int, min_seconds: float,
               block_each: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
  """Steady-state seconds per call of each subject, repeats interleaved between subjects.

  Each subject is called once (compilation) and once more (warm-up, and to choose how
  many calls make a repeat of at least `min_seconds`); then `repeats` rounds time each
  subject in turn, so a slow spell of the machine hits all of them alike.

  Args:
    subjects: name -> call() that dispatches one call and returns what to wait for.
      Successive calls of one subject must depend on each other (donated state), so
      waiting for the last waits for all; subjects in `block_each` are waited for after
      every call instead.
    repeats: timed rounds, >= 1.
    min_seconds: minimum length of one timed repeat.
    block_each: names of subjects whose calls are independent.

  Returns:
    name -> {first_call_s, calls_per_repeat, seconds_per_call: [repeats], median_s}.
  """
  results = {}
  for name, call in subjects.items():
    start = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(call())
    second = time.perf_counter() - start
    results[name] = dict(first_call_s=first,
                         calls_per_repeat=max(1, math.ceil(min_seconds / max(second, 1e-6))),
                         seconds_per_call=[])
  for _ in range(repeats):
    for name, call in subjects.items():
      calls = results[name]["calls_per_repeat"]
      start = time.perf_counter()
      for _ in range(calls):
        out = call()
        if name in block_each:
          jax.block_until_ready(out)
      jax.block_until_ready(out)
      results[name]["seconds_per_call"].append((time.perf_counter() - start) / calls)
  for result in results.values():
    result["median_s"] = float(np.median(result["seconds_per_call"]))
  return results


# ------------------------------------------------------------------ FLOPs and the roofline


_MATMULS = ("dot_general", "conv_general_dilated")


def matmul_equations(closed_jaxpr) -> list[tuple[Any, int]]:
  """(equation, times run) of every dot_general and convolution, sub-jaxprs included.

  The body of a `scan` counts `length` times; a `while` body (unknown trip count) once.
  Dead equations count too (none in the programs measured here: their forward results
  feed the backward pass).
  """
  found = []

  def visit(jaxpr, times):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in _MATMULS:
        found.append((eqn, times))
      inner = times * eqn.params["length"] if eqn.primitive.name == "scan" else times
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          if isinstance(sub, jax.extend.core.ClosedJaxpr):
            visit(sub.jaxpr, inner)
          elif isinstance(sub, jax.extend.core.Jaxpr):
            visit(sub, inner)

  visit(closed_jaxpr.jaxpr, 1)
  return found


def _valid_window_pairs(in_size: int, out_size: int, kernel: int, stride: int,
                        padding: tuple[int, int], lhs_dilation: int, rhs_dilation: int) -> int:
  """(output position, kernel tap) pairs of one spatial dim that read a real input element
  (not padding, not a hole of the input dilation)."""
  extent = (in_size - 1) * lhs_dilation + 1
  count = 0
  for out in range(out_size):
    for tap in range(kernel):
      pos = out * stride + tap * rhs_dilation - padding[0]
      count += 0 <= pos < extent and pos % lhs_dilation == 0
  return count


def equation_flops(eqn) -> int:
  """2 * multiply-adds of one dot_general or conv_general_dilated equation."""
  lhs, rhs = (v.aval.shape for v in eqn.invars)
  out = eqn.outvars[0].aval.shape
  if eqn.primitive.name == "dot_general":
    (contracting, _), _ = eqn.params["dimension_numbers"]
    return 2 * math.prod(out) * math.prod(lhs[d] for d in contracting)
  p = eqn.params
  lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
  pairs = 1
  for i, (l_dim, r_dim, o_dim) in enumerate(zip(lhs_spec[2:], rhs_spec[2:], out_spec[2:])):
    pairs *= _valid_window_pairs(lhs[l_dim], out[o_dim], rhs[r_dim], p["window_strides"][i],
                                 p["padding"][i], p["lhs_dilation"][i], p["rhs_dilation"][i])
  batch_per_group = lhs[lhs_spec[0]] // out[out_spec[0]]
  return (2 * out[out_spec[0]] * out[out_spec[1]] * rhs[rhs_spec[1]] * batch_per_group
          * pairs)


def step_matmuls(loss_fn: Callable, *args) -> list[tuple[Any, int]]:
  """Matmul/conv equations of jax.value_and_grad(loss_fn, has_aux=True)(*args)."""
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  return matmul_equations(jax.make_jaxpr(grad_fn)(*args))


def make_roofline(equations: list[tuple[Any, int]], key: jax.Array
                  ) -> tuple[Callable[[], Any], int]:
  """The distinct matmuls and convolutions of a program, alone, as one jitted program.

  Args:
    equations: from `matmul_equations`; each runs once in the roofline, whatever its
      count (a scan body's equations stand for all their iterations: the rate is what
      the roofline measures).
    key: PRNG key of the random operands.

  Returns:
    (call, flops): call() runs every equation once on fixed random operands of its
    shapes and returns the outputs; flops of one call.
  """
  operands = []
  for i, (eqn, _) in enumerate(equations):
    keys = jax.random.split(jax.random.fold_in(key, i), len(eqn.invars))
    operands.append([jax.random.normal(k, v.aval.shape, v.aval.dtype)
                     for k, v in zip(keys, eqn.invars)])

  @jax.jit
  def run(operands):
    return [eqn.primitive.bind(*ops, **eqn.params)
            for (eqn, _), ops in zip(equations, operands)]

  return functools.partial(run, operands), sum(equation_flops(e) for e, _ in equations)


def total_flops(equations: list[tuple[Any, int]]) -> int:
  """FLOPs of a program: every equation's FLOPs times the times it runs."""
  return sum(times * equation_flops(eqn) for eqn, times in equations)


# ------------------------------------------------------------------ the yardstick


_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}
_NHWC = ("NHWC", "HWIO", "NHWC")


def _yardstick_layers(model_config: ml_collections.ConfigDict):
  """Encoder body, decoder, and the flat width before the heads, as (kind, shape) lists.

  kind is "dense" (kernel (in, out)), "conv" (3x3 stride 2, SAME), "conv_t" (3x3
  transposed, stride 2, SAME), "conv_out" (3x3 stride 1, SAME) or "reshape" (to the
  conv decoder's first feature map); the same layers as `vae.models` builds.
  """
  cfg = model_config
  height, width, channels = IMAGE_SHAPE
  if cfg.architecture == "mlp":
    widths = [height * width * channels, *cfg.hidden_sizes]
    encoder = [("dense", (a, b)) for a, b in zip(widths[:-1], widths[1:])]
    decoder_widths = [cfg.latent_dim, *reversed(widths)]
    decoder = [("dense", (a, b)) for a, b in zip(decoder_widths[:-1], decoder_widths[1:])]
    return encoder, decoder, widths[-1]
  features = list(cfg.conv_features)
  scale = 2 ** len(features)
  small = (height // scale, width // scale, features[-1])
  encoder = [("conv", (3, 3, a, b)) for a, b in zip([channels] + features[:-1], features)]
  encoder += [("dense", (math.prod(small), cfg.conv_hidden_size))]
  decoder = [("dense", (cfg.latent_dim, cfg.conv_hidden_size)),
             ("dense", (cfg.conv_hidden_size, math.prod(small))), ("reshape", small)]
  reversed_features = features[::-1]
  decoder += [("conv_t", (3, 3, a, b)) for a, b in
              zip([features[-1]] + reversed_features[:-1], reversed_features)]
  decoder += [("conv_out", (3, 3, features[0], channels))]
  return encoder, decoder, cfg.conv_hidden_size


def _apply(layers, params, h, activation, activate_last):
  """Runs (kind, shape) layers with their (kernel, bias) params on a batch h."""
  weighted = [i for i, (kind, _) in enumerate(layers) if kind != "reshape"]
  for i, ((kind, shape), layer_params) in enumerate(zip(layers, params)):
    if kind == "reshape":
      h = h.reshape((h.shape[0],) + shape)
      continue
    kernel, bias = layer_params
    if kind == "dense":
      h = h.reshape(h.shape[0], -1) @ kernel
    elif kind == "conv_t":
      h = jax.lax.conv_transpose(h, kernel, (2, 2), "SAME", dimension_numbers=_NHWC)
    else:
      strides = (2, 2) if kind == "conv" else (1, 1)
      h = jax.lax.conv_general_dilated(h, kernel, strides, "SAME", dimension_numbers=_NHWC)
    h = h + bias
    if activate_last or i != weighted[-1]:
      h = activation(h)
  return h


def make_yardstick(model_config: ml_collections.ConfigDict, batch: np.ndarray,
                   key: jax.Array) -> tuple[Callable[[], Any], Callable, tuple]:
  """A minimal hand-written training step of the model: no Flax, no metrics.

  Single-sample reparameterised ELBO with a Bernoulli likelihood and the analytic KL,
  `optax.adam(1e-3)`, jitted with params and optimiser state donated.

  Args:
    model_config: `config.model` of a Bernoulli model.
    batch: (B, 28, 28, 1) images in [0, 1].
    key: PRNG key of the initialisation and the samples.

  Returns:
    (call, loss_fn, loss_args): call() runs one step and returns the new params;
    loss_fn(params, key, x) and loss_args (shapes only: the params are donated) give
    the step's jaxpr for FLOP counting.
  """
  encoder, decoder, head_width = _yardstick_layers(model_config)
  activation = _ACTIVATIONS[model_config.activation]
  latent_dim = model_config.latent_dim

  def init_layers(layers, key):
    params = []
    for i, (kind, shape) in enumerate(layers):
      if kind == "reshape":
        params.append(())
        continue
      fan_in = math.prod(shape[:-1])
      kernel = jax.random.normal(jax.random.fold_in(key, i), shape) / math.sqrt(fan_in)
      params.append((kernel, jnp.zeros(shape[-1])))
    return params

  keys = jax.random.split(key, 4)
  heads = [("dense", (head_width, latent_dim))] * 2
  params = {"encoder": init_layers(encoder, keys[0]), "heads": init_layers(heads, keys[1]),
            "decoder": init_layers(decoder, keys[2])}

  def loss_fn(params, key, x):
    h = _apply(encoder, params["encoder"], x, activation, activate_last=True)
    (mean_kernel, mean_bias), (logvar_kernel, logvar_bias) = params["heads"]
    mean, logvar = h @ mean_kernel + mean_bias, h @ logvar_kernel + logvar_bias
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    logits = _apply(decoder, params["decoder"], z, activation, activate_last=False)
    logits = logits.reshape(x.shape)
    reconstruction = -jnp.sum(jax.nn.softplus(logits) - x * logits, axis=(1, 2, 3))
    kl = 0.5 * jnp.sum(jnp.square(mean) + jnp.expm1(logvar) - logvar, axis=1)
    return -jnp.mean(reconstruction - kl), ()

  optimizer = optax.adam(1e-3)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, step_key, x):
    step_key, sample_key = jax.random.split(step_key)
    grads, _ = jax.grad(loss_fn, has_aux=True)(params, sample_key, x)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, step_key

  x = jnp.asarray(batch)
  carry = [params, optimizer.init(params), keys[3]]

  def call():
    carry[0], carry[1], carry[2] = step(carry[0], carry[1], carry[2], x)
    return carry[0]

  shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (params, keys[3], x))
  return call, loss_fn, shapes


# ------------------------------------------------------------------ the trainer's block


def make_trainer(config: ml_collections.ConfigDict, block_batches: np.ndarray
                 ) -> tuple[Callable[[], Any], Any, Any]:
  """The library's jitted block for one run, built as `train.train_vectorized` builds it.

  Args:
    config: the run's config (only the model, loss and optimiser are used).
    block_batches: (T, B, 28, 28, 1) images: T steps per call, batch sharded over the
      mesh's "data" axis (all devices of this process).

  Returns:
    (call, model, params): call() runs one block of T steps and returns the
    accumulator; the model and the fresh params (unstacked) for FLOP counting.
  """
  mesh = distributed.data_mesh()
  model = build_model(config.model, IMAGE_SHAPE)
  root_key = jax.random.PRNGKey(config.seed)
  init_key, train_key = (jax.random.fold_in(root_key, i) for i in range(2))
  params = model.init(init_key)
  state = train.TrainState(
      jnp.zeros((), jnp.int32), params,
      train.make_optimizer(config, config.optimizer.learning_rate).init(params))
  replicated = distributed.replicated(mesh)
  stack = train._stack  # pylint: disable=protected-access
  carry = [jax.device_put(stack([state]), replicated),
           jax.device_put(stack([train.empty_accumulator()]), replicated)]
  hp = jax.device_put(stack([train.hyperparams(config)]), replicated)
  train_keys = jax.device_put(jnp.stack([train_key]), replicated)
  block = train.make_train_block(model, config, True, mesh)
  batches = distributed.put_process_rows(  # one process: its rows are the whole batch
      block_batches, distributed.sharded_along(mesh, train.batch_axis(True)),
      train.batch_axis(True))

  def call():
    carry[0], carry[1] = block(carry[0], carry[1], hp, train_keys, batches)
    return carry[1]

  return call, model, params


def _rate(result: dict[str, Any], examples_per_call: int, flops_per_call: int
          ) -> dict[str, Any]:
  """Throughput figures of one `time_calls` result."""
  seconds = result["median_s"]
  return dict(examples_per_s=examples_per_call / seconds,
              examples_per_s_repeats=[examples_per_call / s
                                      for s in result["seconds_per_call"]],
              gflops=flops_per_call / seconds / 1e9, seconds_per_call=seconds,
              first_call_s=result["first_call_s"],
              compile_s=max(0.0, result["first_call_s"] - seconds),
              calls_per_repeat=result["calls_per_repeat"])


# ------------------------------------------------------------------ workers


def _train_images(path: str) -> np.ndarray:
  return np.load(path, mmap_mode="r")


def _block(images: np.ndarray, config: ml_collections.ConfigDict, batch_size: int,
           steps: int) -> np.ndarray:
  """(steps, batch_size, 28, 28, 1) dynamically binarised training batches."""
  batches = data.TrainBatches(np.asarray(images), batch_size, config.seed, True)
  return batches.block(0, steps)


def worker_train(task: dict[str, Any]) -> dict[str, Any]:
  """Trainer (T steps per call and 1), yardstick and roofline of one model and batch."""
  name, batch_size, steps = task["model"], task["batch_size"], task["steps_per_dispatch"]
  config = MODELS[name][1]()
  config.train.batch_size = batch_size
  images = _train_images(task["images"])
  block = _block(images, config, batch_size, steps)
  rss_start = peak_rss_mib()

  trainer, model, params = make_trainer(config, block)
  trainer_1, _, _ = make_trainer(config, block[:1])
  first_calls = {}
  for subject, call in (("trainer", trainer), ("trainer_dispatch1", trainer_1)):
    start = time.perf_counter()
    jax.block_until_ready(call())
    first_calls[subject] = time.perf_counter() - start
  rss_trainer = peak_rss_mib()

  loss_fn = train.make_loss_fn(model, config.loss)
  key = jax.random.PRNGKey(0)
  equations = step_matmuls(loss_fn, params, key, jnp.asarray(block[0]), jnp.float32(1.0))
  flops = total_flops(equations)
  roofline, roofline_flops = make_roofline(equations, key)
  yardstick, yard_loss, yard_args = make_yardstick(config.model, block[0], key)
  yard_flops = total_flops(step_matmuls(yard_loss, *yard_args))
  results = time_calls({"trainer": trainer, "trainer_dispatch1": trainer_1,
                        "yardstick": yardstick, "roofline": roofline},
                       task["repeats"], task["min_seconds"], block_each=("roofline",))
  results["trainer"]["first_call_s"] = first_calls["trainer"]
  results["trainer_dispatch1"]["first_call_s"] = first_calls["trainer_dispatch1"]

  out = dict(model=name, description=MODELS[name][0], batch_size=batch_size,
             steps_per_dispatch=steps, device_count=jax.device_count(),
             num_params=int(sum(p.size for p in jax.tree.leaves(params))),
             flops_per_step=flops, yardstick_flops_per_step=yard_flops,
             matmuls_per_step=sum(t for _, t in equations))
  out["trainer"] = _rate(results["trainer"], steps * batch_size, steps * flops)
  out["trainer_dispatch1"] = _rate(results["trainer_dispatch1"], batch_size, flops)
  out["yardstick"] = _rate(results["yardstick"], batch_size, yard_flops)
  out["roofline"] = _rate(results["roofline"], batch_size, roofline_flops)
  roofline_gflops = out["roofline"]["gflops"]
  for subject in ("trainer", "trainer_dispatch1", "yardstick"):
    out[subject]["roofline_fraction"] = out[subject]["gflops"] / roofline_gflops
  out["trainer_vs_yardstick"] = (out["trainer"]["examples_per_s"]
                                 / out["yardstick"]["examples_per_s"])
  out["peak_rss_mib_start"] = rss_start
  out["peak_rss_mib_trainer"] = rss_trainer
  out["peak_rss_mib"] = peak_rss_mib()
  return out


def worker_data_parallel(task: dict[str, Any]) -> dict[str, Any]:
  """The trainer's throughput with the batch sharded over this process's devices."""
  config = MODELS[task["model"]][1]()
  images = _train_images(task["images"])
  rows = []
  for batch_size in task["batch_sizes"]:
    config.train.batch_size = batch_size
    block = _block(images, config, batch_size, task["steps_per_dispatch"][str(batch_size)])
    trainer, _, _ = make_trainer(config, block)
    result = time_calls({"trainer": trainer}, task["repeats"], task["min_seconds"])
    rows.append(dict(model=task["model"], device_count=jax.device_count(),
                     batch_size=batch_size, steps_per_dispatch=len(block),
                     **_rate(result["trainer"], len(block) * batch_size, 0)))
    rows[-1].pop("gflops")
  return dict(rows=rows, peak_rss_mib=peak_rss_mib())


def worker_iwae(task: dict[str, Any]) -> dict[str, Any]:
  """`Evaluator.evaluate` at K importance samples on N tiled test images.

  One batch is evaluated first (compilation and warm-up), then the N images; the
  evaluation's matmuls and convolutions are counted and replayed alone as its roofline.
  """
  config = MODELS[task["model"]][1]()
  model = build_model(config.model, IMAGE_SHAPE)
  test = np.load(task["images"])
  images = np.resize(test, (task["num_examples"],) + test.shape[1:])
  params = model.init(jax.random.PRNGKey(0))
  eval_config = ml_collections.ConfigDict(dict(
      batch_size=min(task["batch_size"], len(images)),
      num_importance_samples=task["num_samples"], chunk_size=task["chunk_size"],
      num_elbo_samples=config.eval.num_elbo_samples))
  evaluator = evaluate.Evaluator(model, eval_config)
  key = jax.random.PRNGKey(1)
  rss_start = peak_rss_mib()
  start = time.perf_counter()
  evaluator.evaluate(params, key, images[:eval_config.batch_size])
  first = time.perf_counter() - start
  start = time.perf_counter()
  summary = evaluator.evaluate(params, key, images)
  seconds = time.perf_counter() - start
  rss_eval = peak_rss_mib()
  rate = len(images) / seconds
  compile_s = max(0.0, first - eval_config.batch_size / rate)

  # FLOPs of one batch, from the same per-example function the Evaluator vmaps.
  batch_fn = jax.vmap(evaluate.make_example_metrics(model, eval_config), in_axes=(None, 0, 0))
  batch = eval_config.batch_size
  equations = matmul_equations(jax.make_jaxpr(batch_fn)(
      params, jax.random.split(key, batch), jnp.asarray(images[:batch])))
  flops_per_example = total_flops(equations) / batch
  roofline, roofline_flops = make_roofline(equations, key)
  timed = time_calls({"roofline": roofline}, task["repeats"], task["min_seconds"],
                     block_each=("roofline",))["roofline"]
  roofline_gflops = roofline_flops / timed["median_s"] / 1e9
  gflops = flops_per_example * rate / 1e9
  return dict(model=task["model"], description=MODELS[task["model"]][0],
              num_importance_samples=task["num_samples"], num_examples=len(images),
              batch_size=batch, chunk_size=task["chunk_size"],
              seconds=seconds, examples_per_s=rate, first_batch_s=first,
              compile_s=compile_s, projected_10000_s=compile_s + 10000 / rate,
              gflop_per_example=flops_per_example / 1e9, gflops=gflops,
              roofline_gflops=roofline_gflops, roofline_fraction=gflops / roofline_gflops,
              log_px=summary["log_px"], peak_rss_mib_start=rss_start,
              peak_rss_mib=rss_eval)


def worker_sweep(task: dict[str, Any]) -> dict[str, Any]:
  """Whole wall time of one sweep mode, in this fresh process."""
  base = tiny.get_config() if task["base"] == "tiny" else default.get_config()
  configs = benchmark_sweep.sweep_configs(base, task["num_points"], task["batch_size"],
                                          task["num_steps"])
  benchmark_sweep.preload_data(base)
  with tempfile.TemporaryDirectory() as workdir:
    seconds = benchmark_sweep.time_mode(configs, task["mode"], workdir)
  return dict(seconds=seconds, peak_rss_mib=peak_rss_mib())


WORKERS = {"train": worker_train, "data_parallel": worker_data_parallel,
           "iwae": worker_iwae, "sweep": worker_sweep}


def run_worker(task: dict[str, Any], env: dict[str, str] | None = None,
               in_process: bool = False) -> dict[str, Any]:
  """Runs one task in a fresh Python process of this script; returns its JSON result.

  With `in_process` (--quick, where the figures mean nothing) the task runs here, which
  saves the start-up and the compilations a fresh process repeats.
  """
  start = time.perf_counter()
  if in_process:
    task = json.loads(json.dumps(task))  # As a worker process sees it.
    result = json.loads(json.dumps(WORKERS[task["kind"]](task)))
    result["worker_s"] = time.perf_counter() - start
    return result
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
    output = f.name
  command = [sys.executable, os.path.abspath(__file__), f"--worker={json.dumps(task)}",
             f"--worker_output={output}"]
  try:
    done = subprocess.run(command, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, check=False)
    if done.returncode:
      raise RuntimeError(f"Worker {task} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-4000:]}")
    with open(output) as f:
      result = json.load(f)
    result["worker_s"] = time.perf_counter() - start
    return result
  finally:
    os.remove(output)


# ------------------------------------------------------------------ sections


def _settings(quick: bool) -> dict[str, Any]:
  """Every size of the run, from the flags and the --quick defaults."""
  def pick(flag_value, full, fast):
    return flag_value if flag_value is not None else (fast if quick else full)

  models = FLAGS.models or (["mlp_400_20"] if quick else list(MODELS))
  unknown = [m for m in models if m not in MODELS]
  if unknown:
    raise app.UsageError(f"--models: unknown {unknown}; valid names are {list(MODELS)}.")
  iwae_models = ["mlp_400_20"] if quick else models
  iwae_examples = {m: 8 if quick else {"mlp_400_20": 300, "default": 100,
                                        "mnist_conv": 4}.get(m, 200) for m in iwae_models}
  if FLAGS.iwae_num_examples:
    for item in FLAGS.iwae_num_examples.split(","):
      model, _, number = item.rpartition("=")
      for m in [model] if model else iwae_models:
        iwae_examples[m] = int(number)
  sweep_grid = pick(FLAGS.sweep_grid, ["8@128"], ["1@8"])
  return dict(
      quick=quick, models=models,
      batch_sizes=[int(b) for b in pick(FLAGS.batch_sizes, [32, 128, 256, 1024], [8])],
      repeats=pick(FLAGS.repeats, 5, 1), min_seconds=0.0 if quick else 0.3,
      max_examples_per_call=FLAGS.max_examples_per_call,
      iwae_models=iwae_models, iwae_num_examples=iwae_examples,
      iwae_num_samples=pick(FLAGS.iwae_num_samples, 5000, 20),
      iwae_batch_size={m: 4 if quick or m == "mnist_conv" else 100 for m in iwae_models},
      iwae_chunk_size=10 if quick else 100,
      sweep_base="tiny" if quick else "default",
      main_command_config="tiny" if quick else "default",
      sweep_grid=[tuple(int(v) for v in item.split("@")) for item in sweep_grid],
      sweep_num_steps=pick(FLAGS.sweep_num_steps, 300, 5),
      data_parallel_model="mlp_400_20",
      data_parallel_batch_sizes=[
          int(b) for b in pick(FLAGS.data_parallel_batch_sizes, [128, 1024], [8])],
      data_parallel_devices=[1, 2],
      sections=list(FLAGS.sections))


def _steps_per_call(settings: dict[str, Any], model: str, batch_size: int) -> int:
  """Training steps per call: the model config's steps_per_dispatch, fewer for big batches."""
  configured = 2 if settings["quick"] else MODELS[model][1]().train.steps_per_dispatch
  return max(1, min(configured, settings["max_examples_per_call"] // batch_size))


def _log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def section_train(settings, paths) -> list[dict[str, Any]]:
  rows = []
  for model in settings["models"]:
    for batch_size in settings["batch_sizes"]:
      row = run_worker(dict(kind="train", model=model, batch_size=batch_size,
                            steps_per_dispatch=_steps_per_call(settings, model, batch_size),
                            repeats=settings["repeats"], min_seconds=settings["min_seconds"],
                            images=paths["train"]), in_process=settings["quick"])
      rows.append(row)
      _log(f"train {model} batch {batch_size}: trainer "
           f"{row['trainer']['examples_per_s']:.0f} ex/s (T=1: "
           f"{row['trainer_dispatch1']['examples_per_s']:.0f}), yardstick "
           f"{row['yardstick']['examples_per_s']:.0f}, roofline "
           f"{row['roofline']['gflops']:.1f} GFLOP/s, trainer "
           f"{100 * row['trainer']['roofline_fraction']:.0f}% of it")
  return rows


def section_iwae(settings, paths) -> list[dict[str, Any]]:
  rows = []
  for model in settings["iwae_models"]:
    row = run_worker(dict(kind="iwae", model=model, images=paths["test"],
                          num_examples=settings["iwae_num_examples"][model],
                          num_samples=settings["iwae_num_samples"],
                          batch_size=settings["iwae_batch_size"][model],
                          chunk_size=settings["iwae_chunk_size"],
                          repeats=settings["repeats"], min_seconds=settings["min_seconds"]),
                     in_process=settings["quick"])
    rows.append(row)
    _log(f"iwae {model} K={row['num_importance_samples']}: "
         f"{row['examples_per_s']:.2f} ex/s, 10,000 in {row['projected_10000_s'] / 60:.1f} "
         f"min, peak {row['peak_rss_mib']:.0f} MiB")
  return rows


def section_sweep(settings, paths) -> list[dict[str, Any]]:
  del paths
  rows = []
  for num_points, batch_size in settings["sweep_grid"]:
    seconds = {}
    for mode in benchmark_sweep.MODES:
      seconds[mode] = run_worker(dict(
          kind="sweep", base=settings["sweep_base"], mode=mode, num_points=num_points,
          batch_size=batch_size, num_steps=settings["sweep_num_steps"]),
          in_process=settings["quick"])["seconds"]
    rows.append(benchmark_sweep.row(batch_size, num_points, settings["sweep_num_steps"],
                                    seconds["sequential"], seconds["vectorized"]))
    _log(f"sweep {num_points} points, batch {batch_size}: sequential "
         f"{seconds['sequential']:.1f} s, vectorised {seconds['vectorized']:.1f} s")
  return rows


def section_data_parallel(settings, paths) -> list[dict[str, Any]]:
  rows = []
  for devices in settings["data_parallel_devices"]:
    flags_value = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                         f"--xla_force_host_platform_device_count={devices}"]))
    result = run_worker(dict(kind="data_parallel", model=settings["data_parallel_model"],
                             batch_sizes=settings["data_parallel_batch_sizes"],
                             steps_per_dispatch={
                                 b: _steps_per_call(settings, settings["data_parallel_model"], b)
                                 for b in settings["data_parallel_batch_sizes"]},
                             repeats=settings["repeats"], min_seconds=settings["min_seconds"],
                             images=paths["train"]), env={"XLA_FLAGS": flags_value},
                        in_process=settings["quick"] and devices == jax.device_count())
    for row in result["rows"]:
      row["peak_rss_mib"] = result["peak_rss_mib"]
      rows.append(row)
      _log(f"data parallel {devices} device(s), batch {row['batch_size']}: "
           f"{row['examples_per_s']:.0f} ex/s")
  return rows


def section_main_command(settings, paths) -> list[dict[str, Any]]:
  """The README's main command as a user runs it: a fresh process of experiments.train,
  with its logging, evaluations and checkpoints; the median of its progress lines'
  steps/s (`steps_per_sec` of metrics.jsonl, which leaves out evaluations and
  checkpoints) against the trainer's steady state in the training section."""
  del paths
  config = settings["main_command_config"]
  with tempfile.TemporaryDirectory() as workdir:
    command = [sys.executable, "-m", "experiments.train", f"--config=configs/{config}.py",
               f"--workdir={workdir}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=os.path.dirname(_SCRIPTS), capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
      raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rates = [r["steps_per_sec"] for r in map(json.loads, f) if r["split"] == "train"]
  row = dict(command=f"python -m experiments.train --config=configs/{config}.py "
                     "--workdir=...", config=config, seconds=seconds,
             median_steps_per_s=float(np.median(rates)), num_logs=len(rates))
  _log(f"main command: {seconds:.0f} s, progress lines' median "
       f"{row['median_steps_per_s']:.1f} steps/s")
  return [row]


SECTIONS = {"train": section_train, "iwae": section_iwae, "sweep": section_sweep,
            "data_parallel": section_data_parallel, "main_command": section_main_command}


# ------------------------------------------------------------------ targets and tables


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
  """The issue's targets on this machine, each with its measured value and verdict."""
  found = []

  def add(name, value, threshold, met, detail):
    found.append(dict(target=name, value=value, threshold=threshold, met=bool(met),
                      detail=detail))

  for row in results["training"]:
    where = f"{row['model']}, batch {row['batch_size']}"
    ratio = row["trainer_vs_yardstick"]
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
      lines.append(
          f"| {r['model']} | {r['batch_size']} | {r['steps_per_dispatch']} | "
          f"{r['trainer']['examples_per_s']:,.0f} | "
          f"{r['trainer_dispatch1']['examples_per_s']:,.0f} | "
          f"{r['yardstick']['examples_per_s']:,.0f} | {r['trainer_vs_yardstick']:.2f} | "
          f"{r['flops_per_step'] / 1e9:.3g} | {r['trainer']['gflops']:.1f} | "
          f"{r['roofline']['gflops']:.1f} | "
          f"{100 * r['trainer']['roofline_fraction']:.0f}% | "
          f"{100 * r['yardstick']['roofline_fraction']:.0f}% | "
          f"{r['trainer']['compile_s']:.1f} | {_mib(r['peak_rss_mib_trainer'])} |")
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
    (row,) = results["main_command"]
    lines += [f"Main command (`{row['command']}`, a fresh process with its logging, "
              f"evaluations and checkpoints): {row['seconds']:.0f} s in all; its progress "
              f"lines' median {row['median_steps_per_s']:.1f} steps/s.", ""]
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


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _write_inputs(directory: str, quick: bool) -> dict[str, str]:
  """Saves train and test images (N, 28, 28, 1) as .npy files for the workers.

  The embedded MNIST splits; with `quick`, random binary images instead (reading the
  embedded set takes seconds, and the smoke test's figures mean nothing).
  """
  if quick:
    rng = np.random.default_rng(0)
    splits = {split: (rng.random((n,) + IMAGE_SHAPE) < 0.13).astype(np.float32)
              for split, n in (("train", 64), ("test", 16))}
  else:
    data_config = default.get_config().data
    splits = {split: data.load_split(data_config, split) for split in ("train", "test")}
  paths = {}
  for split, images in splits.items():
    paths[split] = os.path.join(directory, f"{split}.npy")
    np.save(paths[split], images)
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_dependency_logs()
  logging.set_verbosity(logging.WARNING)
  if FLAGS.worker:
    task = json.loads(FLAGS.worker)
    result = WORKERS[task["kind"]](task)
    with open(FLAGS.worker_output, "w") as f:
      json.dump(result, f)
    return
  unknown = [s for s in FLAGS.sections if s not in SECTIONS]
  if unknown:
    raise app.UsageError(f"--sections: unknown {unknown}; valid are {list(SECTIONS)}.")
  start = time.perf_counter()
  settings = _settings(FLAGS.quick)
  if settings["quick"]:
    # A smoke test: compile fast (as tests/conftest.py does), in this process and workers.
    jax.config.update("jax_disable_most_optimizations", True)
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
  results: dict[str, Any] = dict(
      command=" ".join(["python scripts/benchmark.py"] + [shlex.quote(a)
                                                          for a in sys.argv[1:]]),
      machine=dict(cpu=_cpu_name(), cpu_count=os.cpu_count(), platform=platform.platform(),
                   python=platform.python_version(), jax=jax.__version__,
                   flax=_version("flax"), optax=optax.__version__,
                   xla_flags=os.environ.get("XLA_FLAGS", ""),
                   load_average_before=list(os.getloadavg())),
      settings=settings)
  with tempfile.TemporaryDirectory() as tmp:
    paths = _write_inputs(tmp, settings["quick"])
    for name, section in SECTIONS.items():
      key = "training" if name == "train" else name
      results[key] = section(settings, paths) if name in settings["sections"] else []
  results["machine"]["load_average_after"] = list(os.getloadavg())
  results["targets"] = targets(results)
  results["seconds"] = time.perf_counter() - start
  results["markdown"] = markdown(results)
  output_dir = os.path.dirname(os.path.abspath(FLAGS.output))
  os.makedirs(output_dir, exist_ok=True)
  with open(FLAGS.output, "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.splitext(FLAGS.output)[0] + ".md", "w") as f:
    f.write(results["markdown"])
  print(results["markdown"])
  print(f"Wrote {FLAGS.output} in {results['seconds']:.0f} s.")


def _version(package: str) -> str:
  import importlib.metadata  # pylint: disable=import-outside-toplevel
  return importlib.metadata.version(package)


def _define_flags() -> None:
  """The command line; defined only when run as a script, so importing defines no flags."""
  flags.DEFINE_bool("quick", False, "Tiny sizes, one model, one batch size, one repeat, "
                    "in this process where it can: a smoke test of every section (its "
                    "figures mean nothing).")
  flags.DEFINE_string("output", "runs/benchmark.json",
                      "JSON path; the Markdown tables go to the same path with .md.")
  flags.DEFINE_list("models", None,
                    "Models to time (default: all of MODELS; quick: mlp_400_20).")
  flags.DEFINE_list("batch_sizes", None,
                    "Training batch sizes (default 32,128,256,1024; quick: 8).")
  flags.DEFINE_integer("repeats", None, "Timed repeats per figure, the median is reported "
                       "(default 5; quick: 1).")
  flags.DEFINE_integer("max_examples_per_call", 4096,
                       "Training calls run min(the model config's steps_per_dispatch, "
                       "this // batch) steps, so that a call of a big batch stays short.")
  flags.DEFINE_list("sections", list(SECTIONS), "Sections to run.")
  flags.DEFINE_string("iwae_num_examples", None,
                      "Images timed per IWAE measurement (after one warm-up batch): one "
                      "number, or model=number pairs (default: mlp_400_20=300, "
                      "default=100, burda_mlp=200, mnist_conv=4; quick: 8).")
  flags.DEFINE_integer("iwae_num_samples", None, "K of IWAE (default 5000; quick: 20).")
  flags.DEFINE_list("sweep_grid", None,
                    "points@batch measurements of the sweep section (default 8@128; e.g. "
                    "2@128,4@128,8@32,8@512 for the trend; quick: 1@8).")
  flags.DEFINE_integer("sweep_num_steps", None,
                       "Training steps per sweep point, a multiple of the base config's "
                       "steps_per_dispatch (default 300; quick: 5).")
  flags.DEFINE_list("data_parallel_batch_sizes", None,
                    "Batch sizes of the data-parallel section (default 128,1024; quick: 8).")
  flags.DEFINE_string("worker", None, "Internal: run one measurement (a JSON task) in this "
                      "process and write its JSON result to --worker_output.")
  flags.DEFINE_string("worker_output", None, "Internal: see --worker.")

if __name__ == "__main__":
  _define_flags()
  app.run(main)
