"""dqn: the Double DQN target by hand, one GradientStep update the same on TensorFlow, JAX and PyTorch, a tiny
training run per backend, Ctrl-C and --resume, evaluate on another backend, bad input in one line.

Starting a backend costs more than the tiny runs, so tests/dqn_check.py does the checks that need Keras in one
process per backend, two processes at a time; the test process itself never imports Keras.
"""
from __future__ import annotations

import csv
import functools
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dlkit.plugins.dqn import DQNConfig, ReplayBuffer, epsilon_at
from tests.conftest import BACKENDS, ONE_THREAD, run_check, run_cli
from tests.dqn_check import GAMMA, RESUMED, TINY, tiny_problem

pytestmark = pytest.mark.e2e  # about 80 s on two busy cores: six processes, five of them starting a backend
SCRIPT = Path(__file__).with_name("dqn_check.py")
check = functools.partial(run_check, SCRIPT, timeout=300)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    """The checks on each backend, then the JAX run evaluated on PyTorch through the CLI, two at a time."""
    out = tmp_path_factory.mktemp("dqn")
    with ThreadPoolExecutor(2) as pool:
        found = dict(zip(BACKENDS, pool.map(lambda b: check(out / b, backend=b), BACKENDS)))
        jax_run = found["jax"]["train"]["path"]
        found["evaluated"] = run_cli("evaluate", jax_run, "--backend", "torch", "--json", env=ONE_THREAD, cwd=out)
    return found


# -- the update, by hand --------------------------------------------------------------------------------
def forward(weights, x):
    """The 3-8-2 Q-network of tiny_problem in NumPy."""
    w1, b1, w2, b2 = weights
    return np.maximum(x @ w1 + b1, 0.0) @ w2 + b2


def by_hand():
    online, target, (states, actions, rewards, next_states, done) = tiny_problem()
    picked = forward(online, next_states).argmax(axis=1)  # Double DQN: the online network picks
    rated = forward(target, next_states)
    double = rewards + GAMMA * (1 - done) * rated[np.arange(len(picked)), picked]
    nature = rewards + GAMMA * (1 - done) * rated.max(axis=1)
    q = forward(online, states)[np.arange(len(actions)), actions]
    error = np.abs(double - q)
    huber = np.where(error <= 1.0, 0.5 * error ** 2, error - 0.5).mean()
    return double, nature, q, huber


def test_the_tiny_problem_tells_double_dqn_from_dqn():
    double, nature, _, _ = by_hand()
    assert not np.allclose(double, nature)  # else the next test could not see which target the step uses
    assert (nature >= double - 1e-6).all()  # max over the target network is never below the online pick


@pytest.mark.parametrize("backend", BACKENDS)
def test_td_targets_and_huber_loss_equal_the_hand_computed_ones(reports, backend):
    double, nature, q, huber = by_hand()
    found = reports[backend]["update"]
    np.testing.assert_allclose(found["targets"]["double"], double, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(found["targets"]["dqn"], nature, rtol=1e-5, atol=1e-6)
    assert found["loss"] == pytest.approx(huber, rel=1e-5)
    assert found["q"] == pytest.approx(q.mean(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_updates_train_the_q_network_and_only_it(reports, backend):
    found = reports[backend]["update"]
    assert found["losses"][-1] < 0.75 * found["losses"][0], found["losses"]  # 0.64 on every backend
    assert found["target_kept"]  # in `uses`: read, never trained
    assert found["polyak_gap"] < 1e-6 and found["copied"]
    assert found["traces"] == (20 if backend == "torch" else 1)  # compiled once on TensorFlow and JAX


@pytest.mark.parametrize("other", ["jax", "torch"])
def test_one_update_gives_the_same_loss_and_weights_on_every_backend(reports, other):
    ref, it = reports["tensorflow"]["update"], reports[other]["update"]
    assert it["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    for mine, theirs in zip(it["weights_after_one"], ref["weights_after_one"]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(it["losses"], ref["losses"], rtol=1e-4)


# -- the pieces without Keras ------------------------------------------------------------------------------
def test_epsilon_falls_linearly_then_stays():
    cfg = DQNConfig(total_steps=1000, exploration_fraction=0.2, epsilon_final=0.1)
    assert [round(epsilon_at(s, cfg), 6) for s in (0, 100, 200, 500)] == [1.0, 0.55, 0.1, 0.1]
    assert epsilon_at(0, DQNConfig(exploration_fraction=0.0, epsilon_final=0.05)) == 0.05


def test_the_replay_buffer_overwrites_the_oldest_and_survives_a_checkpoint():
    buffer = ReplayBuffer(4, obs_dim=2)
    for i in range(6):  # rows 4 and 5 overwrite 0 and 1
        buffer.add(np.full(2, i), i % 2, float(i), np.full(2, i + 1), i == 5)
    assert buffer.fill == 4 and sorted(buffer.rows[:, 3]) == [2.0, 3.0, 4.0, 5.0]  # the rewards kept
    again = ReplayBuffer(4, obs_dim=2, saved=buffer.state())
    assert np.array_equal(again.rows, buffer.rows) and (again.fill, again.next) == (4, 2)
    states, actions, rewards, next_states, done = again.sample(np.random.default_rng(0), 50)
    assert actions.dtype == np.int32 and set(rewards) == {2.0, 3.0, 4.0, 5.0}
    assert (next_states == states + 1).all() and (done == (rewards == 5.0)).all()
    half = ReplayBuffer(4, obs_dim=2)
    half.add(np.zeros(2), 0, 1.0, np.ones(2), False)
    assert len(half.state()["replay"]) == 1  # only the filled rows are checkpointed


# -- training, resume and evaluation ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tiny_run_trains_logs_plots_and_evaluates(reports, backend):
    found = reports[backend]["train"]
    metrics, run = found["metrics"], Path(found["path"])
    assert metrics["status"] == "completed" and metrics["backend"] == backend
    assert metrics["steps_completed"] == TINY["total_steps"] and metrics["dataset"] == "CartPole-v1"
    test = metrics["test"]
    assert metrics["headline"] == {"metric": "mean_return", "value": test["mean_return"]}
    assert test["episodes"] == TINY["eval_episodes"] and test["seeds"] == "1000000000..1000000004"
    assert 8 <= test["min_return"] <= test["mean_return"] <= test["max_return"] <= 500  # CartPole lasts ≥ 8 steps
    rows = list(csv.DictReader(io.StringIO((run / "history.csv").read_text())))
    assert [int(r["step"]) for r in rows] == [200, 400, 600]
    assert all(float(r["loss"]) > 0 for r in rows)  # the first round of updates is at step 150
    assert float(rows[-1]["epsilon"]) == pytest.approx(0.04) and int(rows[-1]["episodes"]) >= 1
    assert {"learning_curves.png", "returns.png", "episode.gif"} <= set(found["plots"])
    assert (run / "model.keras").is_file() and not (run / "resume").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_then_resume_continues_to_the_end_of_the_budget(reports, backend):
    found = reports[backend]["resume"]
    assert found["stopped"].startswith("training interrupted; the model after step 200 is in")
    assert found["at_interrupt"] == {"status": "interrupted", "steps_completed": 200}
    metrics = found["metrics"]
    assert metrics["status"] == "completed" and metrics["steps_completed"] == RESUMED["total_steps"]
    assert [r["from"] for r in metrics["resumed"]] == [200]
    rows = list(csv.DictReader(io.StringIO(found["history"])))
    assert [int(r["step"]) for r in rows] == list(range(200, RESUMED["total_steps"] + 1, 200))
    episodes = [int(r["episodes"]) for r in rows]  # the count of episodes was restored, not restarted
    assert episodes == sorted(episodes) and episodes[1] > episodes[0] > 0


def test_evaluate_reloads_the_q_network_on_another_backend(reports):
    proc = reports["evaluated"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    recorded = reports["jax"]["train"]["metrics"]["test"]
    assert result["backend"] == "torch" and result["test"]["episodes"] == TINY["eval_episodes"]
    # the same greedy episodes, seed for seed: the same returns, whichever backend computes the Q-values
    assert result["test"]["mean_return"] == recorded["mean_return"]
    assert result["test"]["min_return"] == recorded["min_return"]


# -- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_environments_dqn_cannot_use_are_refused_in_one_line(reports, backend):
    found = reports[backend]["refusals"]
    assert found["Pendulum-v1"] == "dqn needs discrete actions; Pendulum-v1 has Box(-2, 2)"
    assert found["dlkit_test/Pixels-v0"] == ("dqn needs a vector observation; dlkit_test/Pixels-v0 observes images, "
                                             "Box(0, 255, shape (8, 8, 3))")
    assert found["FrozenLake-v1"] == "dqn needs a vector observation; FrozenLake-v1 observes Discrete(16)"
    assert found["NoSuchThing-v9"] == ("unknown Gymnasium environment 'NoSuchThing-v9' (gymnasium.pprint_registry() "
                                       "lists the ids)")


@pytest.mark.parametrize("args, message", [
    (["--env", "CartPol-v1"], "Error: unknown Gymnasium environment 'CartPol-v1'. Did you mean 'CartPole-v1'?"),
    (["--hidden", "0"], "'--hidden': 0 is not in the range x>=1"),
])
def test_bad_options_are_one_line_and_leave_no_run(tmp_path, args, message):
    # cwd: not the repository, whose stale dlkit.egg-info (if any) would shadow the installed entry points
    proc = run_cli("train", "dqn", "--backend", "torch", "--out", str(tmp_path), *args, env=ONE_THREAD, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith(("Usage:", "Try "))]
    lines = [line for line in lines if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "dqn").exists()
