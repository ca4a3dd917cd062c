"""dlkit.steps.GradientStep on one backend (run as a script: a backend per process).

    KERAS_BACKEND=jax python tests/steps_check.py

A GAN-shaped and a Q-learning-shaped update on tiny models whose weights come from a fixed NumPy
RNG, so every backend starts from the same numbers. Prints one JSON object: what each step changed,
the per-step losses and final weights (compared across backends by tests/test_steps.py), trace counts.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from dlkit import backends

LATENT, FEATURES, BATCH = 4, 6, 16


def seeded(model, rng: np.random.Generator):
    """Kernels from the NumPy RNG; biases and batch-norm statistics keep their deterministic zeros/ones."""
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32") if w.ndim == 2 else w
                       for w in model.get_weights()])
    return model


def values(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def changed(before: list[np.ndarray], variables) -> list[bool]:
    return [not np.array_equal(b, a) for b, a in zip(before, values(variables))]


def gan(dropout: float = 0.0, steps: int = 3) -> dict:
    import keras
    from keras import layers, ops

    from dlkit.steps import GradientStep

    rng = np.random.default_rng(0)
    generator = seeded(keras.Sequential([keras.Input((LATENT,)), layers.Dense(8, use_bias=False),
                                         layers.BatchNormalization(), layers.ReLU(), layers.Dense(FEATURES)],
                                        name="generator"), rng)
    discriminator = seeded(keras.Sequential([keras.Input((FEATURES,)), layers.Dense(8, activation="relu"),
                                             layers.Dropout(dropout, seed=1), layers.Dense(1)],
                                            name="discriminator"), rng)

    def d_loss(real, noise):
        real_logits = discriminator(real, training=True)
        fake_logits = discriminator(generator(noise, training=True), training=True)
        return (ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits)),
                {"real_score": ops.mean(ops.sigmoid(real_logits))})

    def g_loss(noise):
        return ops.mean(ops.softplus(-discriminator(generator(noise, training=True), training=True)))

    uses = (generator, discriminator)
    d_step = GradientStep(d_loss, trainable=discriminator, optimizer=keras.optimizers.Adam(1e-2), uses=uses)
    g_step = GradientStep(g_loss, trainable=generator, optimizer=keras.optimizers.Adam(1e-2), uses=uses)
    watched = {"d_trained": discriminator.trainable_variables, "g_trained": generator.trainable_variables,
               "g_stats": [v for v in generator.non_trainable_variables if "moving" in v.path],
               "d_seeds": discriminator.non_trainable_variables}  # the Dropout layer's seed state, when it draws
    assert len(watched["g_stats"]) == 2, watched["g_stats"]

    def step_and_changes(step, *batch) -> tuple[dict, dict]:
        before = {name: values(variables) for name, variables in watched.items()}
        logs = step(*batch)
        return logs, {name: changed(before[name], variables) for name, variables in watched.items()}

    report, losses = {}, []
    for i in range(steps):
        real = rng.normal(1.0, 0.3, size=(BATCH, FEATURES)).astype("float32")
        noise = [rng.normal(size=(BATCH, LATENT)).astype("float32") for _ in range(2)]
        d_logs, d_changes = step_and_changes(d_step, real, noise[0])
        g_logs, g_changes = step_and_changes(g_step, noise[1])
        if i == 0:
            report |= {"after_d_step": d_changes, "after_g_step": g_changes}
        losses.append([d_logs["loss"], d_logs["real_score"], g_logs["loss"]])
    report |= {"losses": losses, "traces": [d_step.traces, g_step.traces],
               "weights": [float(np.abs(w).sum()) for w in values(generator.variables + discriminator.weights)]}
    return report


def dqn(steps: int = 10, gamma: float = 0.9) -> dict:
    import keras
    from keras import layers, ops

    from dlkit.steps import GradientStep

    rng = np.random.default_rng(1)

    def q_network(name):
        return keras.Sequential([keras.Input((4,)), layers.Dense(16, activation="relu"), layers.Dense(3)], name=name)

    q_net = seeded(q_network("q"), rng)
    target_net = q_network("target")
    target_net.set_weights(q_net.get_weights())
    huber = keras.losses.Huber()

    def td_loss(states, actions, rewards, next_states, done):  # Double DQN
        q = ops.take_along_axis(q_net(states, training=True), actions[:, None], axis=1)[:, 0]
        best = ops.argmax(q_net(next_states), axis=1)
        next_q = ops.take_along_axis(target_net(next_states), best[:, None], axis=1)[:, 0]
        return huber(ops.stop_gradient(rewards + gamma * (1.0 - done) * next_q), q)

    batch = (rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, size=32).astype("int32"),
             rng.normal(size=32).astype("float32"), rng.normal(size=(32, 4)).astype("float32"),
             (rng.random(32) < 0.2).astype("float32"))
    td_step = GradientStep(td_loss, trainable=q_net, optimizer=keras.optimizers.Adam(1e-2), uses=target_net)
    target_before = values(target_net.variables)
    losses = [td_step(*batch)["loss"] for _ in range(steps)]
    traces_same_shape = td_step.traces
    td_step(*(part[:8] for part in batch))  # a smaller batch: a new signature
    return {"losses": losses, "target_changed": any(changed(target_before, target_net.variables)),
            "traces": [traces_same_shape, td_step.traces]}


def noise_inside(calls: int = 3) -> dict:
    """Noise drawn inside the loss function from a SeedGenerator listed in ``uses``: new numbers every call."""
    import keras

    from dlkit.steps import GradientStep

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    seed = keras.random.SeedGenerator(3)
    step = GradientStep(lambda x: keras.ops.mean(model(x + keras.random.normal((4, 2), seed=seed))),
                        trainable=model, optimizer=keras.optimizers.SGD(0.0), uses=seed)
    losses = [step(np.zeros((4, 2), "float32"))["loss"] for _ in range(calls)]
    return {"distinct_losses": len(set(losses)), "seed_state": np.array(seed.state.numpy()).tolist()}


def errors() -> dict[str, str]:
    """The messages of two mistakes: sharing an optimizer between steps; a model missing from ``uses``."""
    import keras

    from dlkit.steps import GradientStep

    a, b = (keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")], name=name) for name in "ab")
    x = np.ones((4, 2), "float32")

    def share_an_optimizer():
        optimizer = keras.optimizers.SGD()
        GradientStep(lambda x: keras.ops.mean(a(x)), trainable=a, optimizer=optimizer)(x)
        GradientStep(lambda x: keras.ops.mean(b(x)), trainable=b, optimizer=optimizer)(x)

    def leave_a_model_out_of_uses():
        GradientStep(lambda x: keras.ops.mean(a(x) * b(x)), trainable=a, optimizer=keras.optimizers.SGD())(x)

    mistakes = {"shared_optimizer": share_an_optimizer, "unlisted_model": leave_a_model_out_of_uses}
    messages = {}
    for name, mistake in mistakes.items():
        try:
            mistake()
            messages[name] = ""
        except ValueError as exc:
            messages[name] = str(exc)
    return messages


def main() -> int:
    backend = backends.activate(None)
    print(json.dumps({"backend": backend, "gan": gan(), "gan_dropout": gan(dropout=0.5, steps=2), "dqn": dqn(),
                      "noise_inside": noise_inside(), "errors": errors()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
