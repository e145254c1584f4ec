"""What Tomczak & Welling's protocol adds to the models and the trainer (issue 30): gated
dense layers, bounded log-variances, the top-down HVAE, AdamNormGrad, early stopping."""

import importlib
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae.configs import tiny
from vae.kernels import posteriors
from vae.models import build_model, networks
from vae.training import train, update

IMAGE_SHAPE = (8, 8, 1)


def model_config(**fields):
  config = tiny.get_config().model
  config.update({"activation": "gated", "hidden_sizes": (6,), "latent_dim": 3, **fields})
  return config


def test_a_gated_layer_is_its_value_times_the_sigmoid_of_its_gate():
  module = networks.MLPEncoder((5,), 2, networks.GATED)
  x = jax.random.uniform(jax.random.PRNGKey(0), IMAGE_SHAPE)
  params = module.init(jax.random.PRNGKey(1), x)["params"]
  kernel, bias = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
  pre = x.reshape(-1) @ kernel + bias
  hidden = pre[:5] * jax.nn.sigmoid(pre[5:])
  mean = module.apply({"params": params}, x)[0]
  np.testing.assert_allclose(mean, hidden @ params["mean"]["kernel"] + params["mean"]["bias"],
                             rtol=1e-5)


def test_logvar_bounds_clip_every_gaussian_head_of_a_hierarchy():
  model = build_model(model_config(logvar_bounds=(-1.0, 0.5), upper_latent_dims=(2,),
                                   upper_hidden_sizes=(4, 4), hierarchy="top_down"),
                      IMAGE_SHAPE)
  x = jax.random.uniform(jax.random.PRNGKey(1), IMAGE_SHAPE)
  for shift, bound in ((50.0, 0.5), (-50.0, -1.0)):  # every log-variance far out, each way
    params = jax.tree_util.tree_map_with_path(
        lambda path, leaf: leaf + shift if (path[-2].key, path[-1].key) == ("logvar", "bias")
        else leaf, model.init(jax.random.PRNGKey(0)))
    q = model.encode(params, x)
    z = q.sample(jax.random.PRNGKey(2))[0]
    logvars = [layer.logvar for layer in q.layer_posteriors(z)]
    logvars.append(posteriors.as_posterior(model.prior(params).conditionals[0](z[3:])).logvar)
    np.testing.assert_array_equal(np.concatenate(logvars), bound)


def test_a_hierarchys_own_family_starts_at_its_encoder_and_refits_its_upper_networks():
  """The gap decomposition's q* in a hierarchy's own family: it starts as the encoder's
  q exactly; its parameters are the top layer's outputs and offsets of the upper
  encoder's weights (a kernel's divided by its fan-in); fitted, it splits the gap."""
  from vae.kernels import inference_gap  # pylint: disable=import-outside-toplevel
  model = build_model(model_config(upper_latent_dims=(2,), upper_hidden_sizes=(4, 4),
                                   hierarchy="top_down"), IMAGE_SHAPE)
  params = model.init(jax.random.PRNGKey(0))
  x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.4, IMAGE_SHAPE).astype(jnp.float32)
  assert model.fits_own_family
  assert model.own_family_name == "top-down hierarchy (diagonal layers)"
  raw, build = model.posterior_parameters(params, x)
  first, flow, offsets = raw
  assert flow is None and list(offsets) == ["upper_encoders_0"]
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(offsets))
  z, log_q = model.encode(params, x).sample(jax.random.PRNGKey(2))
  np.testing.assert_allclose(build(raw).log_prob(z), log_q, rtol=1e-6)
  moved = jax.tree.map(lambda u: u + 1.0, offsets)
  shifted = {**params, "upper_encoders_0": jax.tree.map(
      lambda w: w + (1.0 / np.prod(w.shape[:-1]) if w.ndim > 1 else 1.0),
      params["upper_encoders_0"])}
  np.testing.assert_allclose(build((first, flow, moved)).log_prob(z),
                             model.encode(shifted, x).log_prob(z), rtol=1e-5)
  gap = jax.jit(lambda params: inference_gap.decompose_gap(
      jax.random.PRNGKey(3), x, *model.bind(params), jnp.asarray(-30.0),
      prior=model.prior(params), num_elbo_samples=200, max_steps=100,
      family=inference_gap.Family(*model.posterior_parameters(params, x))))(params)
  np.testing.assert_allclose(gap.approximation_gap_family + gap.amortization_gap_family,
                             gap.total_gap, rtol=1e-5)
  assert float(gap.amortization_gap_family) > 0  # an untrained encoder: the fit gains


def test_the_own_family_fit_on_fewer_examples_leaves_the_diagonal_split_as_it_was():
  """gap.family_examples = 2 of 4: the diagonal q*'s split of every example is the one
  a full pass gives (each example keeps its key), the own family's of the first two
  too, the rest NaN; the summary says on how many and gives the diagonal's beside."""
  from vae.configs import default  # pylint: disable=import-outside-toplevel
  from vae.evaluation import ais_and_gap  # pylint: disable=import-outside-toplevel
  from vae.runtime import distributed  # pylint: disable=import-outside-toplevel
  model = build_model(model_config(upper_latent_dims=(2,), upper_hidden_sizes=(4,),
                                   hierarchy="top_down"), IMAGE_SHAPE)
  params = model.init(jax.random.PRNGKey(0))
  images = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(1), 0.4, (4, *IMAGE_SHAPE)),
                      np.float32)
  eval_config = default.get_config().eval
  eval_config.gap.max_steps, eval_config.gap.num_elbo_samples = 50, 50

  def decompose(family_examples):
    eval_config.gap.family_examples = family_examples
    result = ais_and_gap.decompose_gaps(model, params, jax.random.PRNGKey(2), images,
                                        np.full(4, -30.0), eval_config,
                                        distributed.data_mesh(), progress=False)
    return result, ais_and_gap.gap_section(result, eval_config, model)

  (full, _), (part, section) = decompose(0), decompose(2)
  for name in ("elbo_optimal", "approximation_gap", "amortization_gap"):
    np.testing.assert_allclose(part[name], full[name], rtol=1e-5)
  np.testing.assert_allclose(part["elbo_family"][:2], full["elbo_family"][:2], rtol=1e-5)
  assert np.isnan(part["elbo_family"][2:]).all()
  assert section["num_examples"] == 4 and section["num_examples_family"] == 2
  assert section["approximation_gap_family"] == pytest.approx(
      np.mean(full["approximation_gap_family"][:2]), rel=1e-5)
  assert section["approximation_gap_on_family_examples"] == pytest.approx(
      np.mean(full["approximation_gap"][:2]), rel=1e-5)


def test_the_top_down_model_draws_z2_then_z1_given_x_and_z2_and_decodes_both():
  model = build_model(model_config(upper_latent_dims=(2,), upper_hidden_sizes=(4, 4),
                                   hierarchy="top_down", prior="vamp", prior_components=3,
                                   pseudo_inputs="clipped"), IMAGE_SHAPE)
  params = model.init(jax.random.PRNGKey(0))
  x = jax.random.uniform(jax.random.PRNGKey(1), IMAGE_SHAPE)
  q = model.encode(params, x)
  assert q.top_down and q.sizes == (3, 2)
  z, log_q = q.sample(jax.random.PRNGKey(2))
  z1, z2 = z[:3], z[3:]
  top = posteriors.as_posterior(model.module.apply({"params": params}, x,
                                                   method=type(model.module).encode)[0][:2])
  below = posteriors.as_posterior(model.module.apply(
      {"params": params}, 0, x, z2, method=type(model.module).encode_down))
  np.testing.assert_allclose(log_q, top.log_prob(z2) + below.log_prob(z1), rtol=1e-5)
  # The decoder reads both layers; the VampPrior is q(z2|u) at the pseudo-inputs.
  moved = model.decode(params, z.at[3:].add(1.0))
  assert not np.allclose(moved, model.decode(params, z))
  u = jnp.clip(params["prior"]["pseudo_inputs"], 0.0, 1.0)
  mixture = model.prior(params).top
  np.testing.assert_allclose(mixture.components.mean[1], model._top_posterior(params, u[1]).mean,
                             rtol=1e-6)


def test_adam_norm_grad_normalises_each_tensor_before_adam():
  config = tiny.get_config()
  config.optimizer.normalize_gradients = True
  grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.full((2, 2), 10.0)}
  normalised, _ = update.normalize_each_gradient().update(grads, None)
  np.testing.assert_allclose(normalised["a"], [0.6, 0.8], rtol=1e-6)
  np.testing.assert_allclose(normalised["b"], np.full((2, 2), 0.5), rtol=1e-6)
  # In the optimiser: scaling one tensor's gradient does not change its update.
  optimizer = update.make_optimizer(config)
  params = {"a": jnp.zeros(2), "b": jnp.zeros((2, 2))}
  state = optimizer.init(params)
  first = optimizer.update(grads, state, params)[0]
  second = optimizer.update({"a": grads["a"] * 1e3, "b": grads["b"]}, state, params)[0]
  np.testing.assert_allclose(first["a"], second["a"], rtol=1e-5)


def test_early_stopping_ends_the_run_and_a_rerun_finds_it_finished(tmp_path):
  config = tiny.get_config()
  config.optimizer.learning_rate = 1e-12  # nothing improves after the first evaluation
  config.train.update(num_steps=100, eval_every=10, checkpoint_every=50, keep_best="log_px",
                      early_stopping_patience=2)
  config.eval.splits = ("validation",)
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "best.json")) as f:
    assert json.load(f)["step"] == 10
  steps = {json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))}
  assert max(steps) == 30  # two evaluations without a better one after step 10
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == "30"
  records = open(os.path.join(workdir, "metrics.jsonl")).read()
  again = train.train_and_evaluate(config, workdir)  # finished: nothing trains again
  assert open(os.path.join(workdir, "metrics.jsonl")).read() == records
  assert again["validation"]["log_px"] == json.loads(records.splitlines()[-1])["log_px"]


@pytest.mark.parametrize("fields,message", [
    (dict(architecture="conv"), r"model.activation='gated'.*a nonlinearity for 'conv'"),
    (dict(upper_latent_dims=(2,), hierarchy="top_down", posterior="iaf"),
     r"model.posterior='iaf'.*'diagonal' with hierarchy='top_down'"),
    (dict(logvar_bounds=(2.0, -6.0)), r"model.logvar_bounds=\(2.0, -6.0\).*low < high"),
    (dict(hierarchy="sideways"), r"model.hierarchy='sideways'"),
])
def test_bad_protocol_fields_are_one_clear_error(fields, message):
  with pytest.raises(ValueError, match=message):
    build_model(model_config(**fields), IMAGE_SHAPE)


def best_record(step, value):
  """best.json of a run whose best validation log p(x) was `value` at `step`."""
  return json.dumps({"step": step, "metric": "log_px", "split": "validation", "value": value})


def test_the_table_script_reads_a_run_and_rewrites_only_its_table(tmp_path):
  from scripts import fashion_mnist_table  # pylint: disable=import-outside-toplevel
  from vae.configs import fashion_vae  # pylint: disable=import-outside-toplevel
  from vae.training import checkpoints  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "runs" / "fashion_vae_seed0"
  workdir.mkdir(parents=True)
  config = fashion_vae.get_config()
  checkpoints.save_config(config, str(workdir))
  records = [{"step": 500 * e, "split": "train", "steps_per_sec": 100.0} for e in (1, 2)]
  records += [{"step": 2500 * e, "split": "validation", "log_px": -240.0 + e} for e in (1, 2)]
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  (workdir / "best.json").write_text(best_record(5000, -238.0))
  gap = {"num_examples": 1000, "total_gap": 6.5, "approximation_gap": 2.25,
         "amortization_gap": 4.25}
  (workdir / "eval_test.json").write_text(json.dumps(
      {"step": 5000, "best": True, "num_importance_samples": 5000, "log_px": -229.5,
       "elbo": -235.1, "gap_decomposition": gap}))
  page = tmp_path / "page.md"
  page.write_text("intro\n<!-- table -->\nold\n<!-- /table -->\nafter\n")
  fashion_mnist_table.write_table(str(tmp_path / "runs"), str(page))
  text = page.read_text()
  assert text.startswith("intro\n<!-- table -->\n| row") and text.endswith("after\n")
  row = [line for line in text.splitlines() if "fashion_vae" in line][0]
  assert "| -228.70 ± 0.15 | -229.50 | -235.10 | -238.00 | 10 / 10 | 0.0 | training |" in row
  assert (tmp_path / fashion_mnist_table.PLOT).exists()
  assert ("| VAE w/ Gaussian prior (`fashion_vae_seed0`) | 1000 | 6.50 | 2.25 | 4.25 | 2.25 "
          "| 4.25 |") in text
  # A test of an earlier best (the run trained on and found a better one) is stale.
  (workdir / "best.json").write_text(best_record(7500, -237.5))
  assert fashion_mnist_table.test_of_best(str(workdir)) is None
  (workdir / "best.json").write_text(best_record(5000, -238.0))
  assert fashion_mnist_table.test_of_best(str(workdir))["log_px"] == -229.5
  # The record is archived beside the page: the row outlives its workdir, marked lost.
  shutil.rmtree(workdir)
  fashion_mnist_table.write_table(str(tmp_path / "runs"), str(page))
  row = [line for line in page.read_text().splitlines() if "fashion_vae" in line][0]
  assert "| -229.50 | -235.10 | -238.00 | 10 / 10 | 0.0 | workdir lost |" in row
  archived = json.loads((tmp_path / fashion_mnist_table.ARCHIVE).read_text())
  assert list(archived) == ["fashion_vae_seed0"] and archived["fashion_vae_seed0"]["lost"]


def test_the_table_script_names_a_damaged_best_json_in_one_line(tmp_path):
  from vae.configs import fashion_vae  # pylint: disable=import-outside-toplevel
  from vae.training import checkpoints  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "runs" / "fashion_vae_seed0"
  workdir.mkdir(parents=True)
  checkpoints.save_config(fashion_vae.get_config(), str(workdir))
  (workdir / "best.json").write_text('{"step": 50')
  page = tmp_path / "page.md"
  page.write_text("<!-- table -->\nold\n<!-- /table -->\n")
  done = subprocess.run([sys.executable, "-m", "scripts.fashion_mnist_table",
                         f"--root={tmp_path / 'runs'}", f"--page={page}"],
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  assert "fashion_vae_seed0/best.json is damaged" in done.stderr, done.stderr[-2000:]
  assert "Traceback" not in done.stderr
  assert "old" in page.read_text()


def test_the_gap_table_shows_a_hierarchys_split_in_its_own_family_beside_the_diagonal():
  from scripts import fashion_mnist_table  # pylint: disable=import-outside-toplevel
  gap = {"num_examples": 1000, "total_gap": 3.0, "approximation_gap": 2.5,
         "amortization_gap": 0.5, "approximation_gap_family": 1.75,
         "amortization_gap_family": 1.25}
  runs = {"fashion_hvae": [{"workdir": "runs/fashion_hvae_seed0",
                            "test": {"gap_decomposition": gap}}]}
  assert ("| HVAE w/ Gaussian prior (two levels) (`fashion_hvae_seed0`) | 1000 | 3.00 | 2.50 "
          "| 0.50 | 1.75 | 1.25 |") in fashion_mnist_table.gap_table(runs)
  gap["num_examples_family"] = 250  # fitted in the own family on fewer images
  assert ("| 0.50 | 1.75 (first 250) | 1.25 (first 250) |"
          in fashion_mnist_table.gap_table(runs))


def test_the_fashion_burda_sweep_points_pass_the_config_checks(fake_idx_dir):
  from vae import sweeps  # pylint: disable=import-outside-toplevel
  from vae.config import checks as config_checks  # pylint: disable=import-outside-toplevel
  from vae.configs.sweeps import fashion_burda  # pylint: disable=import-outside-toplevel
  base = fashion_burda.get_config()
  base.data.path, base.data.validation_size = str(fake_idx_dir), 4
  points = fashion_burda.get_sweep()
  assert len(points) == 8
  for point in points:
    config = sweeps.apply_point(base, point)
    config_checks.check_config(config)
    assert fashion_burda.get_table().column(point) and fashion_burda.get_table().row(point)
  rows = [{**point, "log_px": -230.0 - i, "active_units": 10 + i}
          for i, point in enumerate(points)]
  for row in rows[4:]:
    row.update(active_units_z1=row["active_units"] - 3, active_units_z2=3)
  lines = fashion_burda.get_table().markdown(rows).splitlines()
  assert lines[2] == "| | VAE | IWAE k = 5 | IWAE k = 50 | IWAE-DReG k = 50 |"
  assert lines[4] == "| one layer | -230.00 (10) | -231.00 (11) | -232.00 (12) | -233.00 (13) |"
  assert lines[5].startswith("| two layers | -234.00 (11+3) |")


def test_a_fine_tuned_rows_training_hours_count_its_sources(tmp_path):
  from scripts import fashion_mnist_table  # pylint: disable=import-outside-toplevel
  from vae.configs import (  # pylint: disable=import-outside-toplevel
      fashion_hvae_vamp, fashion_hvae_vamp_iwae, fashion_hvae_vamp_iwae_cosine)
  from vae.training import checkpoints, warm_start  # pylint: disable=import-outside-toplevel

  def fake_run(name, config, steps_per_sec, last_step):
    workdir = tmp_path / name
    workdir.mkdir()
    checkpoints.save_config(config, str(workdir))
    records = [{"step": 3600, "split": "train", "steps_per_sec": steps_per_sec},
               {"step": last_step, "split": "validation", "log_px": -225.0}]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (workdir / "best.json").write_text(best_record(last_step, -225.0))
    return str(workdir)

  config = fashion_hvae_vamp_iwae.get_config()
  config.train.init_from = fake_run("source", fashion_hvae_vamp.get_config(), 1.0,  # an hour
                                    last_step=5000)  # 10 epochs
  run = fashion_mnist_table.read_run(fake_run("fine", config, 2.0,  # and half an hour
                                              last_step=config.train.num_steps))
  assert run["train_hours"] == pytest.approx(1.5)
  assert run["curve"] == [(110.0, -225.0)]  # its 100 epochs go on from the source's best
  # The source trained on to a later best: the run still starts from the epoch it read.
  (tmp_path / "fine" / warm_start.ORIGIN_FILE).write_text(json.dumps(
      {"source": str(tmp_path / "source"), "checkpoint": "best", "step": 2500}))
  assert fashion_mnist_table.read_run(str(tmp_path / "fine"))["curve"] == [(105.0, -225.0)]
  (tmp_path / "fine" / warm_start.ORIGIN_FILE).unlink()
  assert fashion_mnist_table._state(run) == "steps all done"  # pylint: disable=protected-access
  # A third stage goes on from the second's best, counted from the first's start.
  config = fashion_hvae_vamp_iwae_cosine.get_config()
  config.train.init_from = str(tmp_path / "fine")
  run = fashion_mnist_table.read_run(fake_run("third", config, 4.0, last_step=2500))
  assert run["train_hours"] == pytest.approx(1.75)
  assert run["curve"] == [(115.0, -225.0)]
  # A row beyond the table has no published figure: its cell gives the target instead.
  line = fashion_mnist_table.table({"fashion_hvae_vamp_iwae_cosine": [run]}).splitlines()[2]
  assert line.startswith("| ours: the row above, then at a cosine-decayed rate "
                         "(`fashion_hvae_vamp_iwae_cosine`) | — (target ≥ -226.03) | — |")


def test_the_fine_tuned_row_builds_its_sources_model_and_changes_only_the_objective():
  from vae.configs import fashion_hvae_vamp_iwae  # pylint: disable=import-outside-toplevel
  from vae.training import checkpoints  # pylint: disable=import-outside-toplevel
  source = importlib.import_module(f"vae.configs.{fashion_hvae_vamp_iwae.SOURCE}").get_config()
  fine = fashion_hvae_vamp_iwae.get_config()
  assert checkpoints.differing_fields(checkpoints.config_to_dict(source),
                                      checkpoints.config_to_dict(fine)) == [
      "eval.chunk_size", "eval.num_importance_samples", "loss.gradient_estimator",
      "loss.kl_warmup_steps", "loss.num_samples", "loss.objective", "train.init_from",
      "train.num_steps"]
  assert fine.train.init_from == f"runs/{fashion_hvae_vamp_iwae.SOURCE}"


def test_the_cosine_row_changes_only_its_sources_learning_rate_and_length():
  from vae.configs import fashion_hvae_vamp_iwae_cosine  # pylint: disable=import-outside-toplevel
  from vae.training import checkpoints, update  # pylint: disable=import-outside-toplevel
  source = importlib.import_module(
      f"vae.configs.{fashion_hvae_vamp_iwae_cosine.SOURCE}").get_config()
  fine = fashion_hvae_vamp_iwae_cosine.get_config()
  assert checkpoints.differing_fields(checkpoints.config_to_dict(source),
                                      checkpoints.config_to_dict(fine)) == [
      "optimizer.learning_rate", "optimizer.schedule", "train.init_from", "train.num_steps"]
  schedule = update.unit_schedule(fine)
  assert float(schedule(0)) == 1.0 and float(schedule(fine.train.num_steps)) == 0.0
