"""One custom gradient update, written once, run identically on TensorFlow, JAX and PyTorch.

Some algorithms do not fit ``model.fit``: a GAN updates two models with two optimizers in turn; DQN
regresses a Q-network onto targets from a second, frozen network. Keras 3 offers two ways out and
both fail a backend-neutral plugin:

* ``Model.train_step`` is backend-specific: a ``tf.GradientTape`` on TensorFlow, a pure function of
  the variable values on JAX, autograd on PyTorch — three copies of every update.
* The Keras 2 recipe — compile the discriminator, set ``discriminator.trainable = False``, compile
  the combined GAN, then alternate ``train_on_batch`` — never trains the discriminator under
  Keras 3. Keras 2 captured the flag when each model was compiled; Keras 3 flips the variables
  themselves, so the discriminator's own step does nothing (with a warning, "The model does not have
  any trainable weights", on TensorFlow and PyTorch; without one on JAX).

:class:`GradientStep` takes a loss function that calls the models the ordinary way and returns one
update of the variables you name, compiled once (``tf.function`` / ``jax.jit``; eager autograd on
PyTorch). A DCGAN (Radford et al., 2016)::

    from keras import ops
    from dlkit.steps import GradientStep

    def d_loss(real, noise):
        fake = generator(noise, training=True)
        real_logits = discriminator(real, training=True)
        fake_logits = discriminator(fake, training=True)
        loss = ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))
        return loss, {"real_score": ops.mean(ops.sigmoid(real_logits))}

    def g_loss(noise):
        return ops.mean(ops.softplus(-discriminator(generator(noise, training=True), training=True)))

    uses = (generator, discriminator)
    d_step = GradientStep(d_loss, trainable=discriminator, optimizer=keras.optimizers.Adam(2e-4), uses=uses)
    g_step = GradientStep(g_loss, trainable=generator, optimizer=keras.optimizers.Adam(2e-4), uses=uses)
    for real in batches:
        d_logs = d_step(real, rng.normal(size=(len(real), latent)).astype("float32"))  # {"loss", "real_score"}
        g_logs = g_step(rng.normal(size=(len(real), latent)).astype("float32"))        # {"loss"}

A Double DQN update (van Hasselt et al., 2016): the target network is in ``uses`` but not trainable,
so it is read and never updated (copy the weights over with ``set_weights`` every N steps)::

    huber = keras.losses.Huber()

    def td_loss(states, actions, rewards, next_states, done):
        q = ops.take_along_axis(q_net(states, training=True), actions[:, None], axis=1)[:, 0]
        best = ops.argmax(q_net(next_states), axis=1)                               # online net picks
        next_q = ops.take_along_axis(target_net(next_states), best[:, None], axis=1)[:, 0]  # target rates
        return huber(ops.stop_gradient(rewards + gamma * (1.0 - done) * next_q), q)

    td_step = GradientStep(td_loss, trainable=q_net, optimizer=keras.optimizers.Adam(1e-3), uses=target_net)

(Computing the target outside the step and passing it in as a batch argument works as well.)

Rules that keep the three backends identical:

* Batch arguments are arrays (NumPy or backend tensors; float32 for floats, since JAX has no float64
  by default). Each call with new shapes compiles again; constants belong in the loss function.
* Everything the loss function reads must be in ``trainable`` or ``uses``: on JAX the step is a pure
  function of exactly those variables, and reading any other raises an error naming it (elsewhere it
  would be frozen into the compiled step). Whatever the forward pass writes (batch-norm moving
  statistics, seed states) is written back after every call, on JAX too, so saving, evaluating and
  the other step see the new values.
* Draw inputs such as latent noise outside the step, with NumPy, and pass them in: the numbers are
  then the same on every backend. Randomness inside the models (Dropout) works everywhere, since the
  layers' seed states are state like any other; a ``keras.random.SeedGenerator`` that the loss
  function uses directly goes in ``uses``.
* No Python ``if`` on tensor values: jax.jit refuses it, so AutoGraph is off on TensorFlow too (only
  eager PyTorch would accept it). Use ``keras.ops.where`` and friends.
* Each step gets its own optimizer: it is built for this step's trainable variables on the first call.
* Variables are collected on the first call: build the models before it, and make a new step after
  changing a layer's ``trainable`` flag.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable


class GradientStep:
    """One gradient update of ``trainable``'s variables on ``loss_fn(*batch)``.

    Args:
        loss_fn: called as ``loss_fn(*batch)``; returns a scalar loss, or ``(loss, {"name": value})``
            for extra scalars to report. It calls the models itself, with ``training=True`` where it
            trains them.
        trainable: the model or layer (or a list of them) whose trainable variables get the update.
        optimizer: a Keras optimizer of this step alone.
        uses: every other model, layer, ``keras.Variable`` or ``keras.random.SeedGenerator`` the loss
            function touches. They are read, their forward-pass updates are kept, they are never trained.
        jit_compile: XLA-compile the TensorFlow step (JAX always compiles with XLA; PyTorch runs eagerly).

    Calling the step runs one update and returns ``{"loss": float, ...}`` as Python floats.
    ``traces`` counts how often ``loss_fn`` ran in Python: once per input signature on TensorFlow and
    JAX (a growing count means it retraces on every call), once per call on PyTorch.
    """

    def __init__(self, loss_fn: Callable, trainable: Any, optimizer: Any, uses: Any = (),
                 jit_compile: bool = False):
        import keras

        self.loss_fn = loss_fn
        self.trainable = _as_list(trainable)
        self.uses = _as_list(uses)
        self.optimizer = optimizer
        self.jit_compile = jit_compile
        self.backend = keras.backend.backend()
        self.traces = 0
        self._run = None

    def __call__(self, *batch) -> dict[str, float]:
        import keras

        if self._run is None:
            self._params, self._state = self._collect_variables()
            self._build_optimizer()
            self._run = getattr(self, f"_{self.backend}_step")()
        batch = keras.tree.map_structure(keras.ops.convert_to_tensor, batch)
        logs = self._run(*batch)
        return {name: float(keras.ops.convert_to_numpy(value)) for name, value in logs.items()}

    # -- the loss, the same on every backend ----------------------------------------------------------
    def _loss(self, batch) -> tuple[Any, Any, dict]:
        """(loss as given, loss scaled for the optimizer, extra logs); called while tracing on TF/JAX."""
        self.traces += 1
        out = self.loss_fn(*batch)
        loss, logs = out if isinstance(out, tuple) else (out, {})
        return loss, self.optimizer.scale_loss(loss), logs  # scale_loss: mixed-precision loss scaling

    # -- one update per backend -------------------------------------------------------------------------
    def _tensorflow_step(self):
        import tensorflow as tf

        def step(*batch):
            with tf.GradientTape() as tape:
                loss, scaled, logs = self._loss(batch)
            # zeros, not None, for a variable the loss does not reach: what JAX and PyTorch give
            grads = tape.gradient(scaled, self._params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            self.optimizer.apply(grads, self._params)
            return {"loss": loss, **logs}

        return tf.function(step, jit_compile=self.jit_compile, reduce_retracing=True, autograph=False)

    def _torch_step(self):
        import torch

        def step(*batch):
            loss, scaled, logs = self._loss(batch)
            # autograd.grad rather than backward(): only these variables' gradients are computed, and
            # no stale .grad is left on the other models' variables
            grads = torch.autograd.grad(scaled, [v.value for v in self._params], materialize_grads=True)
            with torch.no_grad():
                self.optimizer.apply(list(grads), self._params)
            return {"loss": loss, **logs}

        return step

    def _jax_step(self):
        """A pure function of the variable values, jitted; its results are assigned back to the variables."""
        import jax
        import keras

        params, state, slots = self._params, self._state, self.optimizer.variables

        class Scope(keras.StatelessScope):
            """Remembers reads of variables it was not given: jit would freeze their values into the step."""
            def __init__(self, state_mapping):
                super().__init__(state_mapping=state_mapping)
                self.unlisted: set[str] = set()

            def get_current_value(self, variable):
                value = super().get_current_value(variable)
                if value is None:
                    self.unlisted.add(variable.path)
                return value

        def loss_and_writes(param_values, state_values, slot_values, batch):
            mapping = [*zip(params, param_values), *zip(state, state_values), *zip(slots, slot_values)]
            with Scope(state_mapping=mapping) as scope:
                before = [scope.get_current_value(v) for v in state]
                loss, scaled, logs = self._loss(batch)
            if scope.unlisted:
                raise ValueError(f"the loss function reads {', '.join(sorted(scope.unlisted))}, which no model in "
                                 "`trainable` or `uses` holds: add its model (or its SeedGenerator, or the "
                                 "variable) to `uses`.")
            # what the forward pass assigned (moving statistics, seed states), by position in `state`;
            # the dict's keys are fixed at trace time, so they travel with the compiled function
            writes = {i: scope.get_current_value(v) for i, v in enumerate(state)
                      if scope.get_current_value(v) is not before[i]}
            return scaled, ({"loss": loss, **logs}, writes)

        def step(param_values, state_values, slot_values, *batch):
            (_, (logs, writes)), grads = jax.value_and_grad(loss_and_writes, has_aux=True)(
                param_values, state_values, slot_values, batch)
            param_values, slot_values = self.optimizer.stateless_apply(slot_values, grads, param_values)
            return logs, param_values, slot_values, writes

        compiled = jax.jit(step)

        def run(*batch):
            logs, param_values, slot_values, writes = compiled(
                [v.value for v in params], [v.value for v in state], [v.value for v in slots], *batch)
            for variable, value in [*zip(params, param_values), *zip(slots, slot_values)]:
                variable.assign(value)
            for i, value in writes.items():
                state[i].assign(value)
            return logs

        return run

    # -- set-up on the first call ----------------------------------------------------------------------
    def _collect_variables(self) -> tuple[list, list]:
        """The trainable variables, and every other variable the loss may read (the state)."""
        for thing in self.trainable + self.uses:
            if getattr(thing, "built", True) is False:
                raise ValueError(f"{thing.name} is not built: call it once on a batch (or give its Sequential "
                                 "a keras.Input) before the first step.")
        params = _unique(v for layer in self.trainable for v in layer.trainable_variables)
        if not params:
            names = ", ".join(getattr(t, "name", type(t).__name__) for t in self.trainable)
            raise ValueError(f"{names} has no trainable variables (is a layer's trainable flag off?).")
        taken = {id(v) for v in params}
        state = _unique(v for thing in self.trainable + self.uses for v in _variables(thing) if id(v) not in taken)
        return params, state

    def _build_optimizer(self) -> None:
        if not self.optimizer.built:
            self.optimizer.build(self._params)
        # the optimizer's slots are keyed to the variables it was built for (private, stable since Keras 3.0)
        elif [id(v) for v in self.optimizer._trainable_variables] != [id(v) for v in self._params]:
            raise ValueError("the optimizer is already built for other variables: give each GradientStep its "
                             "own optimizer (a GAN needs two).")


def _as_list(things: Any) -> list:
    return list(things) if isinstance(things, (list, tuple)) else [things]


def _variables(thing: Any) -> list:
    import keras

    if isinstance(thing, keras.Variable):
        return [thing]
    if isinstance(thing, keras.random.SeedGenerator):
        return [thing.state]
    return thing.variables


def _unique(variables: Iterable) -> list:
    return list({id(v): v for v in variables}.values())  # first occurrence order
