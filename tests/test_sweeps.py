"""Sweeps: expansion of sweep files, runs in every mode, resume, summary and plots."""

import csv
import json
import logging
import os
import shlex
import textwrap

import numpy as np
import pytest

from tensorboard_events import tensorboard_events

from vae import sweeps
from vae.configs import tiny
from vae.reporting import metric_writers
from vae.sweeps import summary as sweep_summary
from vae.training import update

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_product_and_zip():
  beta = sweeps.axis("loss.beta", [0.5, 2.0])
  seed = sweeps.axis("seed", [0, 1, 2])
  assert sweeps.product(beta, seed) == [
      {"loss.beta": b, "seed": s} for b in (0.5, 2.0) for s in (0, 1, 2)]
  dims = sweeps.axis("model.latent_dim", [2, 4, 8])
  assert sweeps.zip_points(seed, dims) == [
      {"seed": 0, "model.latent_dim": 2}, {"seed": 1, "model.latent_dim": 4},
      {"seed": 2, "model.latent_dim": 8}]
  with pytest.raises(ValueError, match="equal length"):
    sweeps.zip_points(beta, seed)


def test_expand_names_points_and_applies_overrides():
  named = sweeps.expand(tiny.get_config(), sweeps.product(
      sweeps.axis("loss.beta", [1, 4]), sweeps.axis("model.latent_dim", [3])))
  assert [name for name, _ in named] == ["loss.beta=1_model.latent_dim=3",
                                         "loss.beta=4_model.latent_dim=3"]
  assert named[1][1].loss.beta == 4.0 and isinstance(named[1][1].loss.beta, float)
  assert named[1][1].model.latent_dim == 3
  assert tiny.get_config().model.latent_dim == 4  # the base is not modified


@pytest.mark.parametrize("point, message", [
    ({"loss.betta": 1.0}, r"Sweep key 'loss.betta' is not a config field"),
    ({"optimiser.learning_rate": 1.0}, r"'optimiser.learning_rate' is not a config field"),
    ({"loss.beta": -1.0}, r"Sweep point loss.beta=-1.0: config.loss.beta=-1.0 is invalid"),
])
def test_bad_points_are_rejected_with_the_key(point, message):
  with pytest.raises(ValueError, match=message):
    sweeps.expand(tiny.get_config(), [point])


def test_repeated_points_are_rejected():
  with pytest.raises(ValueError, match="repeats points"):
    sweeps.expand(tiny.get_config(), sweeps.axis("seed", [1, 1]))


def write_sweep_file(tmp_path, sweep_expression, extra=""):
  path = tmp_path / "sweep.py"
  path.write_text(textwrap.dedent(f"""
      from vae.configs import tiny
      from vae import sweeps
      from vae.sweeps import summary as sweep_summary

      def get_config():
        return tiny.get_config()

      def get_sweep():
        return {sweep_expression}
      """) + textwrap.dedent(extra))
  return str(path)


def read_summary(workdir):
  with open(os.path.join(workdir, "summary.csv")) as f:
    return list(csv.DictReader(f))


def test_vectorized_beta_sweep_then_resume_skips_finished_points(tmp_path):
  sweep_file = write_sweep_file(tmp_path, 'sweeps.axis("loss.beta", [0.5, 1.0, 4.0])', """
      def get_table():
        return sweep_summary.Table("KL by beta", lambda r: "kl", lambda r: str(r["loss.beta"]),
                                   lambda r: f"{r['kl']:.3f}")
      """)
  workdir = str(tmp_path / "sweep")
  rows = sweeps.run_sweep(sweep_file, tiny.get_config(), sweeps.load_points(sweep_file),
                          workdir, mode="vectorized")
  assert [r["point"] for r in rows] == ["loss.beta=0.5", "loss.beta=1.0", "loss.beta=4.0"]
  summary = read_summary(workdir)
  assert [float(r["loss.beta"]) for r in summary] == [0.5, 1.0, 4.0]
  kls = [float(r["kl"]) for r in summary]
  assert kls[0] > kls[2]  # a larger KL weight buys a lower rate
  for row in summary:
    assert float(row["log_px"]) > float(row["elbo"]) - 1.0
    assert int(row["step"]) == 20
  for row in summary:  # the rate's two parts, each within the rate up to their error
    assert -0.1 <= float(row["mutual_information"]) <= float(row["kl"]) + 0.1
    assert float(row["mutual_information"]) + float(row["marginal_kl"]) == pytest.approx(
        float(row["kl"]), abs=0.2)
  assert float(summary[0]["mutual_information"]) > float(summary[2]["mutual_information"])
  assert len(rows[0]["kl_per_dim"]) == 4 and "kl_per_dim" not in summary[0]
  for plot in ("rate_distortion.png", "kl_per_dim_heatmap.png", "information_vs_beta.png"):
    assert os.path.exists(os.path.join(workdir, plot)), plot
  assert "| loss.beta=4.0 |" in open(os.path.join(workdir, "summary.md")).read()
  # Each point's HParams session: its swept value and final metrics, for TensorBoard.
  events = tensorboard_events(os.path.join(workdir, "loss.beta=4.0", "tensorboard", "hparams"))
  plugin = [value.metadata.plugin_data for event in events for value in event.summary.value
            if value.metadata.plugin_data.plugin_name == "hparams"]
  assert len(plugin) == 3 and b"loss.beta" in plugin[1].content  # experiment, start, end
  finals = {value.tag: value.simple_value for event in events for value in event.summary.value
            if value.tag.startswith("final/")}
  assert finals["final/kl"] == pytest.approx(kls[2], rel=1e-5)
  table = open(os.path.join(workdir, "table.md")).read().splitlines()
  assert table[0] == "KL by beta" and table[2] == "| | 0.5 | 1.0 | 4.0 |"
  assert table[4] == "| kl | " + " | ".join(f"{kl:.3f}" for kl in kls) + " |"
  before = {r["point"]: metric_writers.read_metrics(os.path.join(workdir, r["point"]))
            for r in rows}
  again = sweeps.run_sweep(sweep_file, tiny.get_config(), sweeps.load_points(sweep_file),
                           workdir, mode="vectorized")
  assert again == rows
  for name, records in before.items():
    assert metric_writers.read_metrics(os.path.join(workdir, name)) == records


def test_status_of_a_part_finished_sweep_leaves_unstarted_points_untouched(tmp_path):
  """--status mid-sweep: the finished point is summarised; an unstarted one gets no folder,
  an empty table cell and empty summary cells (not "nan"); a failed one says so."""
  sweep_file = write_sweep_file(tmp_path, 'sweeps.axis("loss.beta", [0.5, 4.0])', """
      def get_table():
        return sweep_summary.Table("KL by beta", lambda r: "kl", lambda r: str(r["loss.beta"]),
                                   lambda r: f"{r['kl']:.3f}")
      """)
  from vae.training import train  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "sweep"
  points = sweeps.load_points(sweep_file)
  (name, config), (unstarted, _) = sweeps.expand(tiny.get_config(), points)
  kl = train.train_and_evaluate(config, str(workdir / name))["test"]["kl"]
  states = sweeps.sweep_status(sweep_file, tiny.get_config(), points, str(workdir))
  assert [state for state, _ in states.values()] == ["finished", "stopped"]
  assert not (workdir / unstarted).exists()
  assert (workdir / name / "tensorboard" / "hparams").is_dir()
  assert (workdir / "table.md").read_text().splitlines()[4] == f"| kl | {kl:.3f} |  |"
  summary = (workdir / "summary.md").read_text()
  assert "nan" not in summary and f"| {unstarted} | 4.00 |  |" in summary
  failed = {"loss.beta": 4.0, "kl": float("nan"), "failure": "the loss became non-finite"}
  table = sweep_summary.Table("", lambda r: "kl", lambda r: str(r["loss.beta"]),
                              lambda r: f"{r['kl']:.3f}")
  assert table.markdown([failed]).splitlines()[4] == "| kl | failed |"


def test_a_point_stopped_during_its_final_evaluation_is_evaluated_by_the_rerun(tmp_path):
  """Trained to its last step, stopped before its final evaluation was logged (a SIGTERM
  during a long test evaluation): the point is not finished; the rerun evaluates it from
  its last checkpoint without training again, and summarises it."""
  sweep_file = write_sweep_file(tmp_path, 'sweeps.axis("loss.beta", [0.5])')
  workdir = str(tmp_path / "sweep")
  points = sweeps.load_points(sweep_file)
  rows = sweeps.run_sweep(sweep_file, tiny.get_config(), points, workdir, mode="sequential")
  point = os.path.join(workdir, rows[0]["point"])
  records = metric_writers.read_metrics(point)
  last_step = tiny.get_config().train.num_steps
  splits = tiny.get_config().eval.splits
  cut = [r for r in records if not (r["step"] == last_step and r["split"] in splits)]
  assert len(cut) < len(records)
  with open(os.path.join(point, metric_writers.METRICS_FILE), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in cut)
  states = sweeps.sweep_status(sweep_file, tiny.get_config(), points, workdir)
  assert [state for state, _ in states.values()] == ["stopped"]
  again = sweeps.run_sweep(sweep_file, tiny.get_config(), points, workdir, mode="sequential")
  without_time = lambda row: {k: v for k, v in row.items() if k != "wall_time_s"}
  assert without_time(again[0]) == without_time(rows[0])  # the same evaluation again
  assert again[0]["wall_time_s"] > rows[0]["wall_time_s"]  # charged the rerun's time
  assert metric_writers.read_metrics(point)[:len(cut)] == cut  # no step trained again
  assert metric_writers.read_metrics(point)[len(cut):] == records[len(cut):]


def test_a_points_damaged_best_json_is_one_line_before_any_point_runs(tmp_path):
  sweep_file = write_sweep_file(tmp_path, 'sweeps.axis("loss.beta", [0.5, 1.0])')
  workdir = tmp_path / "sweep"
  points = sweeps.load_points(sweep_file)
  second = workdir / sweeps.point_name(points[1])
  second.mkdir(parents=True)
  (second / "best.json").write_text('{"step": 10, "met')
  with pytest.raises(ValueError, match=r"sweep/loss.beta=1.0/best.json is damaged"):
    sweeps.run_sweep(sweep_file, tiny.get_config(), points, str(workdir), mode="sequential")
  assert not (workdir / sweeps.point_name(points[0])).exists()


def test_latent_sweep_trains_as_one_padded_program_and_plots(tmp_path, caplog):
  """The points of other latent sizes form one vectorised group (each point's numbers
  against its run alone: tests/test_train.py)."""
  sweep_file = write_sweep_file(tmp_path, 'sweeps.axis("model.latent_dim", [1, 2, 3])')
  caplog.set_level(logging.INFO, logger="absl")
  workdir = str(tmp_path / "sweep")
  rows = sweeps.run_sweep(sweep_file, tiny.get_config(), sweeps.load_points(sweep_file),
                          workdir, mode="vectorized")
  assert "3 run(s)" in caplog.text  # one program for the three
  assert [len(row["kl_per_dim"]) for row in rows] == [1, 2, 3]  # each its own size
  summary = read_summary(workdir)
  assert [int(r["model.latent_dim"]) for r in summary] == [1, 2, 3]
  assert all(0 <= float(r["active_units"]) <= int(r["model.latent_dim"]) for r in summary)
  for plot in ("log_px_and_gap_vs_latent_dim.png", "active_units_vs_latent_dim.png",
               "rate_distortion.png", "kl_per_dim_heatmap.png"):
    assert os.path.getsize(os.path.join(workdir, plot)) > 1000


def test_parallel_mode_runs_the_printed_commands(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  sweep_file = write_sweep_file(tmp_path, 'sweeps.axis("seed", [3, 4])')
  workdir = str(tmp_path / "sweep")
  overrides = {"train.num_steps": 10}
  commands = sweeps.point_commands(sweep_file, sweeps.load_points(sweep_file), workdir,
                                   overrides)
  assert len(commands) == 2
  assert shlex.split(commands[1])[1:] == [
      "-m", "vae.apps.train", f"--config={sweep_file}",
      f"--workdir={workdir}/seed=4", "--config.train.num_steps=10", "--config.seed=4"]
  base = tiny.get_config()
  base.train.num_steps = 10
  sweeps.run_sweep(sweep_file, base, sweeps.load_points(sweep_file), workdir,
                   mode="parallel", parallel=2, base_overrides=overrides)
  summary = read_summary(workdir)
  assert [int(r["step"]) for r in summary] == [10, 10]
  assert all(float(r["wall_time_s"]) > 0 for r in summary)


def test_sweep_app_prints_one_command_per_point(tmp_path):
  import subprocess
  import sys
  done = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", "--sweep=configs/sweeps/beta.py",
       f"--workdir={tmp_path}", "--sweep.train.num_steps=100", "--print_commands"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  lines = done.stdout.strip().splitlines()
  assert len(lines) == 7
  assert "--config.train.num_steps=100" in lines[0] and "--config.loss.beta=0.1" in lines[0]
  bad = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", "--sweep=configs/sweeps/beta.py",
       f"--workdir={tmp_path}", "--sweep.model.latent_dim=0"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and "config.model.latent_dim=0" in bad.stderr
  assert "Traceback" not in bad.stderr


def test_burda_table1_has_its_grid_and_schedule_and_every_point_is_valid():
  from vae.configs.sweeps import burda_table1  # pylint: disable=import-outside-toplevel
  base = burda_table1.get_config()
  base.data.name = "embedded_mnist"  # the checks read the data's shape, offline
  named = sweeps.expand(base, burda_table1.get_sweep())
  assert len(named) == 20
  objectives = sorted({(c.loss.objective, c.loss.num_samples, c.loss.gradient_estimator,
                        len(c.model.upper_latent_dims)) for _, c in named})
  assert ("iwae", 50, "dreg", 1) in objectives and ("elbo", 5, "reparameterized", 0) in objectives
  assert base.train.num_steps == 3280 * 2500  # Burda's 3,280 epochs of batch 20
  schedule = update.unit_schedule(base)
  boundaries = base.optimizer.decay_boundaries
  # The rate falls by 10^(1/7) at each boundary: 10x, 10^4x, 10^7x lower after 1, 4, 7.
  np.testing.assert_allclose([float(schedule(b)) ** -7 for b in boundaries[::3]],
                             [10.0, 1e4, 1e7], rtol=1e-4)


def test_burda_table1_lays_its_summary_out_as_the_paper():
  from vae.configs.sweeps import burda_table1  # pylint: disable=import-outside-toplevel
  rows = [{**point, "log_px": -90.0 - i, "active_units": 7 + i}
          for i, point in enumerate(burda_table1.get_sweep())]
  for row in rows:
    if row.get("model.upper_latent_dims"):
      row.update(active_units_z1=row["active_units"] - 3, active_units_z2=3)
  lines = burda_table1.get_table().markdown(rows).splitlines()
  assert lines[2] == ("| | VAE | IWAE | IWAE-DReG | MIWAE (M = 8) | PIWAE (M = 8) "
                      "| CIWAE (beta = 0.5) |")
  assert [line.split(" |")[0] for line in lines[4:]] == [
      "| 1 layer, k = 1", "| 2 layers, k = 1", "| 1 layer, k = 5", "| 2 layers, k = 5",
      "| 1 layer, k = 50", "| 2 layers, k = 50", "| 1 layer, k = 64", "| 2 layers, k = 64"]
  # Point 0 is the one-layer VAE with k = 1; point 13 the two-layer IWAE-DReG at k = 50.
  assert lines[4].startswith("| 1 layer, k = 1 | 90.00 (7) | 96.00 (13) |  |")
  assert "| 103.00 (17+3) |" in lines[9]


@pytest.mark.parametrize("body, message", [
    ("return 1 / 0", r"get_table\(\) failed: ZeroDivisionError"),
    ("return {}", r"get_table\(\) returned dict, not a vae.sweeps.summary.Table"),
])
def test_a_bad_get_table_stops_before_any_training(tmp_path, body, message):
  sweep_file = write_sweep_file(tmp_path, 'sweeps.axis("loss.beta", [1.0])',
                                f"\ndef get_table():\n  {body}\n")
  workdir = tmp_path / "sweep"
  with pytest.raises(ValueError, match=message):
    sweeps.run_sweep(sweep_file, tiny.get_config(), sweeps.load_points(sweep_file),
                     str(workdir), mode="sequential")
  assert not workdir.exists()


@pytest.mark.parametrize("mode", ["vectorized", "sequential"])
def test_a_diverging_point_fails_alone_and_is_not_retried_unless_asked(tmp_path, mode):
  """Learning rates {1e-3, 3e-3, 1e9}: the last goes non-finite at step 1. It is recorded
  (step and the single run's reason) and listed; the others end with the numbers they get
  alone; a rerun skips it, --retry_failed runs it again."""
  from vae.common import errors  # pylint: disable=import-outside-toplevel
  from vae.training import train, workdirs  # pylint: disable=import-outside-toplevel
  sweep_file = write_sweep_file(
      tmp_path, 'sweeps.axis("optimizer.learning_rate", [1e-3, 3e-3, 1e9])')
  workdir = str(tmp_path / "sweep")
  run = lambda **kw: sweeps.run_sweep(sweep_file, tiny.get_config(),
                                      sweeps.load_points(sweep_file), workdir, mode=mode, **kw)
  with pytest.raises(errors.PointFailedError,
                     match=r"1 of 3 points failed .* optimizer.learning_rate=1000000000.0 at "
                           r"step 1\."):
    run()
  bad = os.path.join(workdir, "optimizer.learning_rate=1000000000.0")
  failure = workdirs.read_failure(bad)
  assert failure["step"] == 1 and "the loss became non-finite at step 1" in failure["reason"]
  assert "Lower config.optimizer.learning_rate (now 1000000000.0)" in failure["reason"]
  summary = read_summary(workdir)
  assert [r["failed_step"] for r in summary] == ["", "", "1"]
  assert "Failed points" in open(os.path.join(workdir, "summary.md")).read()
  alone = tiny.get_config()
  alone.optimizer.learning_rate = 3e-3
  expected = train.train_and_evaluate(alone, str(tmp_path / "alone"))["test"]
  for metric in ("elbo", "log_px", "kl"):
    assert float(summary[1][metric]) == pytest.approx(expected[metric], rel=1e-5)
  before = metric_writers.read_metrics(bad) if os.path.exists(
      os.path.join(bad, metric_writers.METRICS_FILE)) else None
  with pytest.raises(errors.PointFailedError, match="1 of 3 points failed"):
    run()  # skipped: nothing of it trains again
  assert (metric_writers.read_metrics(bad) if before is not None else None) == before
  with pytest.raises(errors.PointFailedError, match="1 of 3 points failed"):
    run(retry_failed=True)  # tried again, it fails again
  assert workdirs.read_failure(bad)["step"] >= 1


def test_sigterm_saves_every_running_point_and_a_rerun_ends_as_uninterrupted(tmp_path):
  """Parallel mode, where the sweep passes the signal on (the other modes stop inside the
  trainer, whose SIGTERM save and resume tests/test_train.py checks)."""
  import json  # pylint: disable=import-outside-toplevel
  import signal  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  import time  # pylint: disable=import-outside-toplevel
  from vae.training import train  # pylint: disable=import-outside-toplevel
  sweep_file = write_sweep_file(tmp_path, 'sweeps.axis("seed", [3, 4])', """
      def get_config():
        config = tiny.get_config()
        config.train.update(num_steps=1500, log_every=10, checkpoint_every=750,
                            eval_every=750)
        return config
      """)
  workdir = tmp_path / "sweep"
  command = [sys.executable, "-m", "experiments.sweep", f"--sweep={sweep_file}",
             f"--workdir={workdir}", "--mode=parallel"]
  sweep = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
  logs = [workdir / f"seed={seed}" / metric_writers.METRICS_FILE for seed in (3, 4)]
  deadline = time.time() + 240
  while not all(log.exists() and log.stat().st_size for log in logs):
    assert time.time() < deadline and sweep.poll() is None, sweep.stderr.read()
    time.sleep(0.2)
  sweep.send_signal(signal.SIGTERM)
  _, stderr = sweep.communicate(timeout=120)
  assert sweep.returncode != 0 and "Interrupted" in stderr.splitlines()[-1], stderr[-2000:]
  last_steps = []
  for seed in (3, 4):
    steps = [int(name) for name in os.listdir(workdir / f"seed={seed}" / "checkpoints")]
    assert steps, seed
    last_steps.append(max(steps))
  # The point that started first may finish while the other still compiles; the other,
  # a few steps in at the signal, must have been saved mid-run.
  assert min(last_steps) < 1500, last_steps
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  for seed in (3, 4):
    alone = json.loads(json.dumps(tiny_alone(train, tmp_path, seed)))
    final = [r for r in metric_writers.read_metrics(workdir / f"seed={seed}")
             if r["split"] == "test"][-1]
    for metric in ("elbo", "log_px"):
      assert final[metric] == pytest.approx(alone["test"][metric], rel=1e-5)


def tiny_alone(train, tmp_path, seed):
  config = tiny.get_config()
  config.train.update(num_steps=1500, log_every=10, checkpoint_every=750, eval_every=750)
  config.seed = seed
  return train.train_and_evaluate(config, str(tmp_path / f"alone{seed}"))


def test_a_parallel_point_whose_process_fails_is_recorded_with_its_log(tmp_path):
  """In parallel mode a point's process that exits with an error (not a non-finite loss,
  which the trainer records itself) is recorded with its exit status and log."""
  import sys  # pylint: disable=import-outside-toplevel
  from vae.common import errors  # pylint: disable=import-outside-toplevel
  from vae.sweeps import run as sweep_run  # pylint: disable=import-outside-toplevel
  from vae.training import workdirs  # pylint: disable=import-outside-toplevel
  point = tmp_path / "point"
  command = f"{sys.executable} -c 'import sys; print(\"boom\"); sys.exit(3)'"
  with sweep_run._Children() as children:  # pylint: disable=protected-access
    with pytest.raises(errors.PointFailedError, match=r"failed \(exit 3\); see .*train.log"):
      children.run(command, str(point))
  failure = workdirs.read_failure(str(point))
  assert failure["step"] == 0 and "exit 3" in failure["reason"]
  assert (point / "train.log").read_text() == "boom\n"
