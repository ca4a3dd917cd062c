"""The plugin contract in the shapes other families take, on TensorFlow, JAX and PyTorch.

tests/plugins/dlkit_shapes is a distribution found through the ``dlkit.algorithms`` entry points like an
installed one (tests/conftest.py puts it on the path): a seq2seq model on tuple inputs, a GAN with its own
loop, a DQN agent without arrays and with a step budget, a GCN on a graph with fixed splits. Each trains on
every backend; each is interrupted after its first checkpoint (Ctrl-C, or SIGKILL for the GAN) and resumed;
runs are reloaded, generated from and predicted with on another backend; mistakes are one clear line.

Starting Python, Keras and a backend costs more than these tiny runs, so tests/shapes_check.py runs many
dlkit commands in one process (a backend per process, as the CLI requires), and two processes run at once.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from dlkit.runs import Run
from dlkit_shapes.agent import Agent
from dlkit_shapes.gan import GAN
from dlkit_shapes.graph import Graph
from dlkit_shapes.seq2seq import Seq2Seq

pytestmark = pytest.mark.e2e  # about two minutes on two cores: six processes, each starting a backend
SCRIPT = Path(__file__).with_name("shapes_check.py")
BACKENDS = ("tensorflow", "jax", "torch")
PLUGINS = {"shape_seq2seq": Seq2Seq, "shape_gan": GAN, "shape_agent": Agent, "shape_graph": Graph}
#: Interrupted after the first checkpoint and resumed on this backend (PyTorch starts its tiny runs fastest).
RESUME_BACKEND = "torch"
#: Budgets long enough to interrupt after the first checkpoint, and how: Ctrl-C stops at a clean point,
#: SIGKILL (the GAN) at any instruction, perhaps inside a checkpoint.
INTERRUPTED = {"shape_seq2seq": ({"epochs": 10}, signal.SIGINT), "shape_agent": ({"total_steps": 800}, signal.SIGINT),
               "shape_graph": ({"epochs": 60}, signal.SIGINT), "shape_gan": ({"epochs": 30}, signal.SIGKILL)}
#: Tuple inputs through the core's --train-samples and --val-fraction (160 train, 40 validation).
SLICED = {"train_samples": 200, "val_fraction": 0.2}


def options(name: str, **more) -> list[str]:
    """The plugin's test_config (plus ``more``) as command-line options."""
    values = {**PLUGINS[name].test_config, **(SLICED if name == "shape_seq2seq" else {}), **more}
    args = []
    for key, value in values.items():
        args += ["--" + key.replace("_", "-"), ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return args


def budget(name: str, interrupted: bool = False) -> int:
    values = {**PLUGINS[name].test_config, **(INTERRUPTED[name][0] if interrupted else {})}
    return values["total_steps"] if name == "shape_agent" else values["epochs"]


def train_step(name: str, backend: str, out: Path, **more) -> dict:
    return {"id": f"train {name}", "cli": ["train", name, "--backend", backend, "--out", str(out),
                                           *options(name, **more)]}


def plan(steps: list[dict], backend: str, folder: Path) -> list[str]:
    """The command that runs ``steps`` in one process on ``backend``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"plan-{backend}.json"
    path.write_text(json.dumps(steps))
    return [sys.executable, str(SCRIPT), str(path)]


def results(stdout: str) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (line for line in stdout.splitlines() if line.startswith("{")))}


def run_plan(steps: list[dict], backend: str, folder: Path) -> dict[str, dict]:
    proc = subprocess.run(plan(steps, backend, folder), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": backend})
    (folder / "steps.jsonl").write_text(proc.stdout)  # kept with the runs, for a look after a failure
    done = results(proc.stdout)
    assert proc.returncode == 0 and len(done) == len(steps), f"{backend}: {proc.stderr[-3000:]}"
    return done


def interrupt(out: Path) -> dict:
    """Train the four on RESUME_BACKEND in one process; stop each once its model.keras exists."""
    steps = [train_step(name, RESUME_BACKEND, out, **more) for name, (more, _) in INTERRUPTED.items()]
    command, log = plan(steps, RESUME_BACKEND, out), out / "steps.jsonl"
    with open(log, "w") as stdout, open(out / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                env={**os.environ, "KERAS_BACKEND": RESUME_BACKEND})
        try:
            for name, (_, sig) in INTERRUPTED.items():
                deadline = time.time() + 240
                while not list(out.glob(f"{name}/*/model.keras")):  # written by the first checkpoint
                    assert proc.poll() is None and time.time() < deadline, (name, (out / "stderr.txt").read_text())
                    time.sleep(0.05)
                if sig == signal.SIGKILL:
                    time.sleep(0.5)  # somewhere in a later epoch: training, logging or checkpointing
                proc.send_signal(sig)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    runs = {name: only_run(out, name) for name in INTERRUPTED}
    # as the interruption left them (stage 2 resumes them)
    state = {name: {"metrics": metrics(run), "history": [int(r[PLUGINS[name].budget_unit]) for r in history(run)],
                    "checkpoint": Run.open(run).checkpoint_index()}
             for name, run in runs.items()}
    return {"returncode": proc.returncode, "steps": results(log.read_text()), "runs": runs, "state": state}


def only_run(out: Path, name: str) -> Path:
    (run,) = [p for p in (out / name).iterdir() if p.is_dir()]
    return run


def history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def ok(result: dict) -> dict:
    assert result.get("code") == 0, f"{result['cli']}\n{result.get('error')}{result.get('stderr', '')[-3000:]}"
    return result


def error_line(result: dict, code: int = 1) -> str:
    """The one line a refused command prints (last line of stderr), after checking nothing else went wrong."""
    assert result.get("code") == code, result
    assert "Traceback" not in result["stderr"], result["stderr"]
    return result["stderr"].strip().splitlines()[-1]


# -- the runs, made once for the module ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Stage 1: the four trained on each backend, and the four interrupted on RESUME_BACKEND."""
    root = tmp_path_factory.mktemp("shapes")

    def train(backend: str) -> dict:
        out = root / backend
        # on the resume backend the GAN gets the interrupted run's budget: the resumed run must match it
        steps = [train_step(name, backend, out, **(INTERRUPTED[name][0] if backend == RESUME_BACKEND and
                                                     name == "shape_gan" else {})) for name in PLUGINS]
        if backend == "tensorflow":
            steps.append({"id": "graph train-samples", "cli": ["train", "shape_graph", "--train-samples", "10",
                                                                "--out", str(out)]})
        return {"steps": run_plan(steps, backend, out), "runs": {name: only_run(out, name) for name in PLUGINS}}

    with ThreadPoolExecutor(max_workers=2) as pool:
        stopped = pool.submit(interrupt, root / "interrupted")
        by_backend = dict(zip(BACKENDS, pool.map(train, BACKENDS)))
        stopped = stopped.result()
    return {"root": root, "backends": by_backend, "interrupted": stopped}


@pytest.fixture(scope="module")
def reloaded(trained) -> dict[str, dict]:
    """Stage 2: on RESUME_BACKEND, the interrupted runs loaded and resumed, and the JAX runs reloaded; on
    JAX, the TensorFlow runs reloaded."""
    root = trained["root"]
    jax_runs, tf_runs = trained["backends"]["jax"]["runs"], trained["backends"]["tensorflow"]["runs"]
    stopped = trained["interrupted"]["runs"]
    resume = [{"id": f"load {name}", "load": str(run / "model.keras")} for name, run in stopped.items()]
    resume += [{"id": f"resume {name}", "cli": ["train", "--resume", str(run)]} for name, run in stopped.items()]
    resume += reload_steps(jax_runs, RESUME_BACKEND, root / "from-jax")
    resume += [
        {"id": "predict", "cli": ["predict", str(jax_runs["shape_seq2seq"]), "--backend", RESUME_BACKEND, "--json",
                                  "1234", "907", "5"]},
        {"id": "predict bad", "cli": ["predict", str(jax_runs["shape_seq2seq"]), "--backend", RESUME_BACKEND, "12a"]},
        {"id": "resume completed", "cli": ["train", "--resume", str(jax_runs["shape_gan"])]},
    ]
    on_jax = reload_steps(tf_runs, "jax", root / "from-tensorflow") + [
        {"id": "generate graph", "cli": ["generate", str(tf_runs["shape_graph"])]},
        {"id": "agent epochs", "cli": ["train", "shape_agent", "--epochs", "3"]},
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        torch_done = pool.submit(run_plan, resume, RESUME_BACKEND, root / "stage2-torch")
        jax_done = pool.submit(run_plan, on_jax, "jax", root / "stage2-jax")
        return {RESUME_BACKEND: torch_done.result(), "jax": jax_done.result()}


def reload_steps(runs: dict[str, Path], backend: str, out: Path) -> list[dict]:
    steps = [{"id": f"evaluate {name}", "cli": ["evaluate", str(run), "--backend", backend, "--json"]}
             for name, run in runs.items()]
    return steps + [
        {"id": "generate shape_gan", "cli": ["generate", str(runs["shape_gan"]), "--backend", backend,
                                             "--out", str(out / "gan"), "--count", "10", "--seed", "3"]},
        {"id": "generate shape_seq2seq", "cli": ["generate", str(runs["shape_seq2seq"]), "--backend", backend,
                                                 "--out", str(out / "seq2seq"), "--count", "5"]},
    ]


# -- training on every backend -----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_shape_trains_to_a_complete_run_folder(trained, backend):
    done = trained["backends"][backend]
    for name, algo in PLUGINS.items():
        assert "done: test " + algo.headline_metric in ok(done["steps"][f"train {name}"])["stdout"]
        run = done["runs"][name]
        for path in ("config.json", "model.keras", "history.csv", "plots/learning_curves.png"):
            assert (run / path).is_file(), (name, path)
        assert not (run / "resume").exists(), name  # a completed run keeps no checkpoint
        record = metrics(run)
        assert record["status"] == "completed" and record["backend"] == backend, record
        assert record["headline"]["metric"] == algo.headline_metric
        assert np.isfinite(record["headline"]["value"]), record
        rows = history(run)
        unit = algo.budget_unit
        assert list(rows[0])[0] == unit, name
        total = budget(name, interrupted=backend == RESUME_BACKEND and name == "shape_gan")
        every = algo.test_config.get("checkpoint_every", 1)
        assert [int(r[unit]) for r in rows] == list(range(every, total + 1, every)), name
        assert record[f"{unit}s_completed"] == total, name


def test_the_shapes_leave_what_their_plugins_need(trained):
    runs = trained["backends"]["tensorflow"]["runs"]
    vocab = json.loads((runs["shape_seq2seq"] / "artifacts" / "vocab.json").read_text())
    assert vocab["tokens"][:3] == ["<pad>", "<start>", "<end>"] and vocab["max_digits"] == 4
    assert json.loads((runs["shape_agent"] / "artifacts" / "env.json").read_text()) == {"env_id": "CartPole-v1"}
    assert (runs["shape_gan"] / "plots" / "samples.png").is_file()
    config = json.loads((runs["shape_agent"] / "config.json").read_text())
    assert config["budget_unit"] == "step" and "epochs" not in config["config"]
    gan = history(runs["shape_gan"])
    assert {"d_loss", "g_loss", "real_score", "d_steps"} <= set(gan[0])
    assert float(gan[-1]["d_steps"]) == 2 * (256 // 64)  # epochs × whole batches of --train-samples
    assert metrics(runs["shape_gan"])["train_samples"] == 256  # images without labels (y_train is None)


def test_tuple_inputs_are_sliced_and_split_by_the_core(trained):
    for backend in BACKENDS:
        run = trained["backends"][backend]["runs"]["shape_seq2seq"]
        record = metrics(run)
        assert record["train_samples"] == 160 and record["test_samples"] == 25, record  # 200 - 20% validation
        assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(history(run)[0])


# -- interrupted, then resumed ------------------------------------------------------------------------------
def test_interrupted_runs_keep_their_last_checkpoint(trained, reloaded):
    stopped = trained["interrupted"]
    assert stopped["returncode"] == -signal.SIGKILL
    for name, (_, sig) in INTERRUPTED.items():
        run, unit = stopped["runs"][name], PLUGINS[name].budget_unit
        if sig == signal.SIGINT:
            line = error_line(stopped["steps"][f"train {name}"], code=130)
            assert line.startswith(f"interrupted: training interrupted; the model after {unit} "), line
            assert line.endswith(f"continue with 'dlkit train --resume {run}'"), line
        else:
            assert f"train {name}" not in stopped["steps"]  # killed: no result, no last words
        state = stopped["state"][name]
        done = state["metrics"].get(f"{unit}s_completed")
        assert state["metrics"]["status"] == ("interrupted" if sig == signal.SIGINT else "running"), state
        assert 1 <= state["checkpoint"] < budget(name, interrupted=True), state
        assert done in (state["checkpoint"], None), state  # a killed run could not say
        # history.csv may hold one row past the checkpoint (killed between log and checkpoint): resume drops it
        every = PLUGINS[name].test_config.get("checkpoint_every", 1)
        assert state["history"] == list(range(every, state["history"][-1] + 1, every)), state
        assert state["history"][-1] - state["checkpoint"] in (0, every), state
        loaded = reloaded[RESUME_BACKEND][f"load {name}"]
        assert "error" not in loaded and loaded["params"] > 0, loaded


@pytest.mark.parametrize("name", list(PLUGINS))
def test_resume_finishes_the_run_without_repeating_a_row(trained, reloaded, name):
    run, algo = trained["interrupted"]["runs"][name], PLUGINS[name]
    unit = algo.budget_unit
    out = ok(reloaded[RESUME_BACKEND][f"resume {name}"])["stdout"]
    record = metrics(run)
    (resumed,) = record["resumed"]
    assert out.startswith(f"resuming {name} at {unit} {resumed['from']} with the {RESUME_BACKEND} backend")
    total, every = budget(name, interrupted=True), algo.test_config.get("checkpoint_every", 1)
    assert every <= resumed["from"] < total, resumed
    assert record["status"] == "completed" and record[f"{unit}s_completed"] == total, record
    assert [int(r[unit]) for r in history(run)] == list(range(every, total + 1, every))
    assert not (run / "resume").exists()


def test_the_resumed_gan_is_the_uninterrupted_gan(trained):
    """Same seed, same budget: after SIGKILL and --resume, the same numbers as a run never interrupted —
    only if the discriminator and both optimizers (Adam's moments, its step count) were restored."""
    resumed = history(trained["interrupted"]["runs"]["shape_gan"])
    straight = history(trained["backends"][RESUME_BACKEND]["runs"]["shape_gan"])
    assert len(resumed) == len(straight) == 30
    for column in ("d_loss", "g_loss", "real_score", "d_steps"):
        np.testing.assert_allclose([float(r[column]) for r in resumed], [float(r[column]) for r in straight],
                                   rtol=1e-5, err_msg=column)
    assert float(resumed[-1]["d_steps"]) == 30 * (256 // 64)


def test_the_resumed_agent_continues_its_counters(trained):
    """ε, the episode count and the replay buffer come back from the checkpoint's plain values and arrays."""
    rows = history(trained["interrupted"]["runs"]["shape_agent"])
    cfg = Agent.config(**Agent.test_config)
    steps = [int(r["step"]) for r in rows]
    np.testing.assert_allclose([float(r["epsilon"]) for r in rows],
                               [max(cfg.epsilon_min, cfg.epsilon_decay ** s) for s in steps], rtol=1e-6)
    assert [int(float(r["replay"])) for r in rows] == [min(s, cfg.replay_size) for s in steps]
    episodes = [int(float(r["episodes"])) for r in rows]
    assert episodes == sorted(episodes) and episodes[-1] > episodes[0]


# -- reloaded on another backend ---------------------------------------------------------------------------
@pytest.mark.parametrize("trained_on, reloaded_on", [("jax", RESUME_BACKEND), ("tensorflow", "jax")])
@pytest.mark.parametrize("name", list(PLUGINS))
def test_evaluate_on_another_backend_reproduces_the_headline(trained, reloaded, trained_on, reloaded_on, name):
    result = json.loads(ok(reloaded[reloaded_on][f"evaluate {name}"])["stdout"])
    run = trained["backends"][trained_on]["runs"][name]
    headline = PLUGINS[name].headline_metric
    assert result["backend"] == reloaded_on
    assert result["test"][headline] == pytest.approx(metrics(run)["test"][headline], abs=1e-4)


@pytest.mark.parametrize("reloaded_on, out", [(RESUME_BACKEND, "from-jax"), ("jax", "from-tensorflow")])
def test_generate_on_another_backend(trained, reloaded, reloaded_on, out):
    folder = trained["root"] / out
    gan = ok(reloaded[reloaded_on]["generate shape_gan"])
    assert f"samples: {folder / 'gan'}" in gan["stdout"]
    images = np.load(folder / "gan" / "samples.npz")["images"]
    assert images.shape == (10, 8, 8, 1) and np.abs(images).max() <= 1.0
    assert (folder / "gan" / "samples.png").stat().st_size > 0
    record = json.loads((folder / "gan" / "generation.json").read_text())
    assert record["backend"] == reloaded_on and record["options"] == {"seed": 3, "count": 10}
    assert record["summary"]["files"] == ["samples.png", "samples.npz"]
    ok(reloaded[reloaded_on]["generate shape_seq2seq"])
    lines = (folder / "seq2seq" / "samples.txt").read_text().splitlines()
    assert len(lines) == 5 and all(" -> " in line for line in lines)


def test_predict_decodes_the_given_strings(reloaded):
    predicted = json.loads(ok(reloaded[RESUME_BACKEND]["predict"])["stdout"])
    assert [p["input"] for p in predicted] == ["1234", "907", "5"]
    for p in predicted:
        assert set(p["output"]) <= set("0123456789") and p["correct"] == (p["output"] == p["input"][::-1])
    assert error_line(reloaded[RESUME_BACKEND]["predict bad"]) == (
        "Error: plugin 'shape_seq2seq' (dlkit-shapes) failed in predict(): ValueError: input '12a' has 'a'; "
        "this model reverses digit strings")


# -- mistakes are one line ---------------------------------------------------------------------------------
def test_mistakes_are_one_clear_line(trained, reloaded):
    refused = trained["backends"]["tensorflow"]["steps"]["graph train-samples"]
    assert error_line(refused) == ("Error: dataset 'communities' comes with fixed train/validation/test splits; "
                                   "--train-samples would change them")
    assert error_line(reloaded["jax"]["generate graph"]).startswith(
        "Error: shape_graph runs do not generate samples (its plugin has no generate hook); plugins that do: ")
    unknown = error_line(reloaded["jax"]["agent epochs"], code=2)  # Click's wording: "No such option: --epochs"
    assert unknown.startswith("Error: No such option") and "--epochs" in unknown, unknown
    completed = trained["backends"]["jax"]["runs"]["shape_gan"]
    assert error_line(reloaded[RESUME_BACKEND]["resume completed"]) == (
        f"Error: {completed} has already completed; nothing to resume (train a new run instead)")
