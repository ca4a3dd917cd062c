"""Data-parallel training on Keras 3's own distribution engine (``keras.distribution``), not a home-made one.

``dlkit train NAME --distribute data-parallel [--devices N]`` sets
``keras.distribution.DataParallel(devices=…)`` before the model is built: every variable is replicated on
the N devices, each batch of ``model.fit`` is split across them (the batch size stays the *global* batch),
and XLA inserts the gradient all-reduce. That is Keras' documented route, and in Keras 3.15 it exists on
the JAX backend only: TensorFlow's ``distribution_lib`` is a prototype its own docstring marks "DO NOT
USE", PyTorch has none. So the other backends are refused in one line instead of running on one device
while claiming N.

Several hosts: ``keras.distribution.initialize(job_addresses, num_processes, process_id)`` (or the
``KERAS_DISTRIBUTION_JOB_ADDRESSES`` / ``_NUM_PROCESSES`` / ``_PROCESS_ID`` variables it reads) starts
JAX's distributed runtime; :func:`apply` calls it when those variables are set. docs/distributed.md says
how, and what was and was not tested.

What is distributed is ``model.fit`` (``run.fit``, which most plugins train through). A plugin's own loop
(``GradientStep``) still runs correctly on the replicated variables, but its batches are not split; the
run records which of the two happened.
"""
from __future__ import annotations

import contextlib
import os

from dlkit.errors import DlkitError

MODES = ("data-parallel",)
#: Variables keras.distribution.initialize reads for a multi-host job (any one of them set means multi-host).
MULTI_HOST_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                        "KERAS_DISTRIBUTION_PROCESS_ID")


def check(mode: str | None, devices: int | None, backend: str) -> None:
    """Refuse what cannot work, before Keras is imported (one line each)."""
    if mode is None:
        if devices is not None:
            raise DlkitError("--devices needs --distribute data-parallel")
        return
    if mode not in MODES:
        raise DlkitError(f"unknown --distribute '{mode}'; choose {', '.join(MODES)}")
    if backend != "jax":
        raise DlkitError(f"data-parallel training needs the jax backend in this Keras version (keras.distribution "
                         f"supports JAX only; {backend} has no working distribution API): add --backend jax")
    if devices is not None and devices < 1:
        raise DlkitError(f"--devices must be at least 1, got {devices}")


def apply(mode: str | None, devices: int | None) -> dict | None:
    """Set Keras' global distribution (after the backend is imported, before the model is built).

    Returns what metrics.json records: the mode and the devices used; None when not distributing.
    """
    if mode is None:
        return None
    import keras

    if any(os.environ.get(name) for name in MULTI_HOST_VARIABLES):
        keras.distribution.initialize()  # JAX's distributed runtime: every host sees the global devices
    present = keras.distribution.list_devices()
    wanted = len(present) if devices is None else devices
    if wanted > len(present):
        hint = (f"; on a CPU, simulate {wanted} with XLA_FLAGS=--xla_force_host_platform_device_count={wanted}"
                if all(d.startswith("cpu") for d in present) else "")
        raise DlkitError(f"--devices {wanted}, but jax sees {len(present)} device(s) ({', '.join(present)}){hint}")
    chosen = present[:wanted]
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
    return {"mode": mode, "devices": chosen}


def check_batch_size(batch_size: int | None, devices: int) -> None:
    if batch_size and batch_size % devices:
        raise DlkitError(f"--batch-size {batch_size} does not split evenly over {devices} devices: choose a multiple "
                         f"of {devices} (the batch size is the global batch, divided among the devices)")


@contextlib.contextmanager
def placed(placement: dict | None):
    """Keep the distribution that :func:`apply` set for the block, then go back to one device."""
    try:
        yield
    finally:
        if placement:
            reset()


def reset() -> None:
    """Back to one device (the Python API may train again in the same process)."""
    import keras

    keras.distribution.set_distribution(None)


def even_batches(x, y, batch_size: int | None, validation_data=None):
    """Arrays trimmed so that every batch of ``model.fit`` splits evenly over the devices.

    JAX shards each batch across the devices and refuses a batch it cannot divide (1,437 examples in
    batches of 128 leave a last batch of 29 for 2 devices). At most devices − 1 examples are dropped
    from the end of each array set. Returns ``(x, y, validation_data, dropped)``; a batch size the
    devices do not divide is refused in one line. Does nothing without a distribution, or for data
    that is not arrays (a PyDataset batches itself).
    """
    import keras

    from dlkit.training import num_examples, take

    current = keras.distribution.distribution()
    if current is None or batch_size is None:
        return x, y, validation_data, 0
    devices = len(current.device_mesh.devices.flatten())
    check_batch_size(batch_size, devices)

    def trimmed(inputs, targets):
        n = num_examples((inputs, targets))
        keep = n - (n % batch_size) % devices
        if keep == n:
            return inputs, targets, 0
        return take(inputs, slice(0, keep)), take(targets, slice(0, keep)), n - keep

    x, y, dropped = trimmed(x, y)
    if validation_data is not None:
        val_x, val_y, val_dropped = trimmed(*validation_data)
        validation_data, dropped = (val_x, val_y), dropped + val_dropped
    return x, y, validation_data, dropped
