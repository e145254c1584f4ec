"""Posterior families, priors, two stochastic layers, and the IWAE family's objectives and
gradient estimators end to end on the tiny config: training (losses, images, checkpoints,
resume, vectorised), evaluation (IWAE, the gap decomposition, AIS), and their config
checks."""

import math

import numpy as np
import pytest

from records import assert_same_metrics

from vae import evaluation as evaluate
from vae.config import checks as config_checks
from vae.configs import tiny
from vae.reporting import metric_writers
from vae.training import checkpoints, train

# The IAF alone and the mixture prior train in the resume, vectorised and objective
# tests below (iaf + mixture, two layers).
COMBINATIONS = [("full_covariance", "standard_normal", 1), ("diagonal", "vamp", 1),
                ("iaf", "vamp", 1), ("diagonal", "standard_normal", 2),
                ("full_covariance", "vamp", 2)]
FULLY_EVALUATED = [("iaf", "vamp", 1), ("full_covariance", "standard_normal", 1),
                   ("diagonal", "standard_normal", 2)]


def family_config(posterior, prior, layers=1):
  """The tiny config with this posterior and prior, and `layers` stochastic layers."""
  config = tiny.get_config()
  config.model.posterior, config.model.prior = posterior, prior
  config.model.prior_components, config.model.flow_hidden = 5, 8
  config.model.upper_latent_dims = (3,) * (layers - 1)
  config.model.upper_hidden_sizes = (16,)
  return config


@pytest.mark.parametrize("posterior, prior, layers", COMBINATIONS)
def test_family_trains_and_evaluates(tmp_path, posterior, prior, layers):
  """Training with its evaluations (IWAE) and images; for the FULLY_EVALUATED,
  experiments.evaluate's gap decomposition (q* diagonal and in the encoder's family)
  and AIS too (from the prior for two layers)."""
  workdir = str(tmp_path)
  results = train.train_and_evaluate(family_config(posterior, prior, layers), workdir)
  test = results["test"]
  for key in ("elbo", "log_px", "bound_gap", "kl", "reconstruction"):
    assert math.isfinite(test[key]), key
  assert test["log_px"] >= test["elbo"] - 3 * test["elbo_stderr"]
  assert test["elbo"] == pytest.approx(test["reconstruction"] - test["kl"], abs=1e-4)
  logged = [r for r in metric_writers.read_metrics(workdir) if r["split"] == "train"]
  assert logged[-1]["elbo"] > logged[0]["elbo"]  # it learned something
  if layers > 1:
    assert test["kl_z1"] + test["kl_z2"] == pytest.approx(test["kl"], abs=1e-4)
    assert logged[-1]["kl_z1"] + logged[-1]["kl_z2"] == pytest.approx(logged[-1]["kl"],
                                                                      abs=1e-3)
    assert test["active_units_z1"] + test["active_units_z2"] == test["active_units"]
    # The rate's parts per layer: I(x; z) = I(x; z_1); every part adds up to the whole.
    assert test["mutual_information"] == test["mutual_information_z1"]
    parts = sum(test[f"{name}_z{l}"] for name in ("mutual_information", "marginal_kl")
                for l in (1, 2))
    assert parts == pytest.approx(test["mutual_information"] + test["marginal_kl"], abs=1e-4)
  # Every family reports I(x; z) and the marginal KL; kl_per_dim where q and p factorise.
  assert math.isfinite(test["mutual_information"] + test["marginal_kl"])
  assert ("kl_per_dim" in test) == (posterior == "diagonal" and prior == "standard_normal")
  if (posterior, prior, layers) not in FULLY_EVALUATED:
    return
  summary = evaluate.evaluate_run(workdir, "test", overrides={
      "num_importance_samples": 50, "decompose_gap": True, "num_examples": 3,
      "estimator": "ais", "ais.start": "prior" if layers > 1 else "encoder",
      "ais.steps": 10, "ais.chains": 2, "gap.max_steps": 100,
      "gap.family_examples": 2 if layers > 1 else 0}, write=False, progress=False)
  gaps = summary["gap_decomposition"]
  if layers > 1:  # its own family fitted on the first 2 of the 3 examples only
    assert gaps["num_examples_family"] == 2
    assert "own family on the first 2" in evaluate.format_report(summary)
  assert gaps["total_gap"] == pytest.approx(gaps["approximation_gap"]
                                            + gaps["amortization_gap"], abs=1e-4)
  assert gaps["posterior_family"] == (
      "bottom-up hierarchy (diagonal layers)" if layers > 1
      else posterior if posterior != "diagonal" else None)
  if gaps["posterior_family"]:
    on_family = gaps.get("total_gap_on_family_examples", gaps["total_gap"])
    assert on_family == pytest.approx(gaps["approximation_gap_family"]
                                      + gaps["amortization_gap_family"], abs=1e-4)
  assert all(math.isfinite(summary["ais"][k]) for k in ("log_px", "acceptance_rate"))


def test_a_family_run_resumes_to_the_same_numbers(tmp_path):
  """Stopped at step 10 and resumed to 20 (a constant schedule, which num_steps does not
  change), a two-layer IAF with a mixture prior ends with the numbers of an
  uninterrupted run."""
  config = family_config("iaf", "mixture", layers=2)
  config.optimizer.schedule = "constant"
  reference = str(tmp_path / "reference")
  train.train_and_evaluate(config, reference)
  resumed = str(tmp_path / "resumed")
  config.train.num_steps = 10
  train.train_and_evaluate(config, resumed)
  assert checkpoints.latest_step(resumed) == 10
  config.train.num_steps = 20
  train.train_and_evaluate(config, resumed)
  assert_same_metrics(metric_writers.read_metrics(resumed),
                      metric_writers.read_metrics(reference), tolerance=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (dict(posterior="flow"), r"model.posterior='flow' is invalid.*'full_covariance'"),
    (dict(prior="gmm"), r"model.prior='gmm' is invalid.*'vamp'"),
    (dict(prior="mixture", prior_components=0), r"model.prior_components=0.*integer >= 1"),
    (dict(posterior="iaf", flow_steps=0), r"model.flow_steps=0.*integer >= 1"),
    (dict(posterior="iaf", flow_hidden=-1), r"model.flow_hidden=-1.*integer >= 1"),
    (dict(upper_latent_dims=(0,)), r"model.upper_latent_dims=\(0,\).*integers >= 1"),
    (dict(upper_latent_dims=(4,), upper_hidden_sizes=(8, -2)),
     r"model.upper_hidden_sizes=\(8, -2\).*integers >= 1"),
])
def test_bad_family_settings_are_one_clear_error(overrides, message):
  config = tiny.get_config()
  config.model.update(overrides)
  with pytest.raises(ValueError, match=message):
    config_checks.check_config(config)


def test_samples_of_a_learned_prior_are_drawn_from_it(tmp_path):
  import jax  # pylint: disable=import-outside-toplevel

  from vae.models import build_model  # pylint: disable=import-outside-toplevel
  config = family_config("diagonal", "mixture")
  model = build_model(config.model, (8, 8, 1))
  params = model.init(jax.random.PRNGKey(0))
  prior = model.prior(params)
  z = np.asarray(model.sample_prior(params, jax.random.PRNGKey(1), 4000))
  weights = np.exp(prior.logits) / np.exp(prior.logits).sum()
  np.testing.assert_allclose(z.mean(axis=0), weights @ np.asarray(prior.means), atol=0.1)


def test_vectorized_family_points_match_the_points_alone(tmp_path):
  """Two two-layer IAF + mixture-prior points differing in beta train in one program
  and each gets the numbers it gets alone."""
  configs = [family_config("iaf", "mixture", layers=2) for _ in range(2)]
  configs[1].loss.beta = 2.0
  together = [str(tmp_path / "a"), str(tmp_path / "b")]
  train.train_vectorized(configs, together)
  alone = str(tmp_path / "alone")
  train.train_and_evaluate(configs[1], alone)
  assert_same_metrics(metric_writers.read_metrics(together[1]),
                      metric_writers.read_metrics(alone))


# ------------------------------------------------------------------ objectives and estimators

TRAINED = [  # (loss fields, model fields): every objective and estimator on richer models
    (dict(objective="miwae", num_samples=3, num_outer_samples=2, gradient_estimator="dreg"),
     dict(posterior="iaf", prior="mixture", upper_latent_dims=(3,))),
    (dict(objective="piwae", num_samples=3, num_outer_samples=2, gradient_estimator="stl"),
     dict(posterior="full_covariance", prior="mixture")),
    (dict(objective="ciwae", num_samples=4, ciwae_beta=0.3, gradient_estimator="dreg"),
     dict()),
    (dict(objective="elbo", gradient_estimator="stl", analytic_kl=False),
     dict(posterior="iaf", upper_latent_dims=(3,))),
]


@pytest.mark.parametrize("loss, model", TRAINED, ids=lambda d: "-".join(
    f"{v}" for v in d.values()) or "diagonal")
def test_each_objective_and_estimator_trains(tmp_path, loss, model):
  config = tiny.get_config()
  config.loss.update(loss)
  config.model.update(dict(prior_components=5, flow_hidden=8, upper_hidden_sizes=(16,)),
                      **model)
  results = train.train_and_evaluate(config, str(tmp_path))
  logged = [r for r in metric_writers.read_metrics(str(tmp_path)) if r["split"] == "train"]
  assert all(np.isfinite(r["objective"]) and np.isfinite(r["grad_norm"]) for r in logged)
  assert logged[-1]["elbo"] > logged[0]["elbo"]  # it learned something
  assert np.isfinite(results["test"]["log_px"])


@pytest.mark.parametrize("fields, message", [
    (dict(objective="miwae", beta=2.0), r"loss.beta=2.0.*1 with the 'miwae' objective"),
    (dict(objective="elbo", gradient_estimator="dreg"), r"gradient_estimator='dreg'.*IWAE"),
    (dict(objective="miwae", num_outer_samples=0), r"num_outer_samples=0.*integer >= 1"),
    (dict(objective="ciwae", ciwae_beta=1.5), r"ciwae_beta=1.5.*in \[0, 1\]"),
    (dict(gradient_estimator="stl"), r"loss.analytic_kl=True.*analytic_kl=False"),
    (dict(gradient_estimator="score"), r"gradient_estimator='score'.*'dreg'"),
    (dict(objective="vimco"), r"loss.objective='vimco'.*'piwae'"),
])
def test_bad_objective_settings_stop_with_one_line(fields, message):
  config = tiny.get_config()
  config.loss.update(fields)
  with pytest.raises(ValueError, match=message):
    config_checks.check_config(config)
