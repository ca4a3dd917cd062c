"""Checks of the dqn plugin that need Keras on one backend, run as a script (a backend per process).

    KERAS_BACKEND=jax python tests/dqn_check.py OUT

does, in one process: the TD targets and one GradientStep update on a tiny batch with weights drawn by
NumPy (the same on every backend); a tiny training run into OUT through dlkit.train; the same run
interrupted (SIGINT, as Ctrl-C) right after its first checkpoint and resumed with dlkit.resume; environments
refused in one line. Prints one JSON line of findings; tests/test_dqn.py asserts on them.
"""
from __future__ import annotations

import json
import sys

GAMMA = 0.9
#: A training run of a few seconds: a 16-unit network trained in rounds of 8 steps.
TINY = {"total_steps": 600, "hidden": (16,), "buffer_size": 1000, "learning_starts": 100, "train_every": 50,
        "gradient_steps": 8, "batch_size": 16, "log_every": 200, "eval_episodes": 5}
#: Interrupted right after its first checkpoint (step 200), then resumed to step 1000.
RESUMED = {**TINY, "total_steps": 1000, "eval_episodes": 2}


def tiny_problem():
    """A Q-network 3-8-2 (the online and a different target), and a batch of 6 transitions, from NumPy."""
    import numpy as np

    rng = np.random.default_rng(7)
    shapes = [(3, 8), (8,), (8, 2), (2,)]
    online = [rng.normal(0, 0.8, s).astype("float32") for s in shapes]
    target = [w + rng.normal(0, 0.8, w.shape).astype("float32") for w in online]
    n = 6
    batch = (rng.normal(size=(n, 3)).astype("float32"), rng.integers(0, 2, n).astype("int32"),
             rng.normal(size=n).astype("float32"), rng.normal(size=(n, 3)).astype("float32"),
             np.array([0, 1, 0, 0, 1, 0], "float32"))
    return online, target, batch


def update() -> dict:
    """td_target with and without Double DQN, one and twenty GradientSteps, and the target updates."""
    import keras
    import numpy as np

    from dlkit.api import Dataset
    from dlkit.plugins.dqn import DQN, DQNConfig, td_loss, td_target, update_target
    from dlkit.steps import GradientStep

    online, target_weights, batch = tiny_problem()
    plugin, data = DQN(), Dataset("tiny", info={"observation_dim": 3, "actions": 2})
    q_network, target = (plugin.build(DQNConfig(hidden=(8,)), data) for _ in range(2))
    q_network.set_weights(online)
    target.set_weights(target_weights)
    _, _, rewards, next_states, done = (keras.ops.convert_to_tensor(part) for part in batch)  # as inside the step
    targets = {name: keras.ops.convert_to_numpy(td_target(q_network, target, rewards, next_states, done, GAMMA,
                                                          double)).tolist()
               for name, double in (("double", True), ("dqn", False))}
    step = GradientStep(td_loss(q_network, target, GAMMA, double=True), trainable=q_network,
                        optimizer=keras.optimizers.Adam(0.01), uses=target)
    first = step(*batch)  # the loss at the weights before the update
    after_one = [w.tolist() for w in q_network.get_weights()]
    losses = [first["loss"]] + [step(*batch)["loss"] for _ in range(19)]
    target_kept = all(np.array_equal(a, b) for a, b in zip(target.get_weights(), target_weights))
    trained = q_network.get_weights()
    update_target(target, q_network, 0.25)
    polyak = max(float(np.abs(t - (0.25 * q + 0.75 * w)).max())
                 for t, q, w in zip(target.get_weights(), trained, target_weights))
    update_target(target, q_network, 1.0)
    copy = all(np.array_equal(t, q) for t, q in zip(target.get_weights(), trained))
    return {"targets": targets, "loss": first["loss"], "q": first["q"], "weights_after_one": after_one,
            "losses": losses, "target_kept": target_kept, "polyak_gap": polyak, "copied": copy,
            "traces": step.traces}


def train(out: str, backend: str) -> dict:
    """A tiny run through dlkit.train, as `dlkit train dqn` would make it."""
    import dlkit

    run = dlkit.train("dqn", backend=backend, out=out, echo=lambda *_: None, **TINY)
    return {"path": str(run.path), "metrics": run.metrics,
            "plots": sorted(p.name for p in run.plots_dir.iterdir())}


def refusals(backend: str) -> dict:
    """Environments dqn cannot use: each one DlkitError line, before any run folder is made."""
    import gymnasium as gym
    import numpy as np

    import dlkit
    from dlkit.errors import DlkitError

    class Pixels(gym.Env):  # image observations, as Atari's
        observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
        action_space = gym.spaces.Discrete(2)

    gym.register("dlkit_test/Pixels-v0", entry_point=Pixels)
    found = {}
    for env_id in ("Pendulum-v1", "dlkit_test/Pixels-v0", "FrozenLake-v1", "NoSuchThing-v9"):
        try:
            dlkit.train("dqn", backend=backend, out="/nonexistent", echo=lambda *_: None, env=env_id)
            found[env_id] = None
        except DlkitError as exc:
            found[env_id] = str(exc)
    return found


if __name__ == "__main__":
    from resume_check import interrupted_and_resumed  # this folder is first on sys.path
    import os
    from pathlib import Path

    import keras

    backend = os.environ["KERAS_BACKEND"]
    out = Path(sys.argv[1])
    report = {"backend": keras.backend.backend(), "update": update(),
              "train": train(str(out / "train"), backend),
              "resume": interrupted_and_resumed("dqn", str(out / "resume"), backend, RESUMED,
                                                after=RESUMED["log_every"]),
              "refusals": refusals(backend)}
    print(json.dumps(report), flush=True)
