"""Denoising diffusion (DDPM) on MNIST or Fashion-MNIST, sampled with DDPM's ancestral sampler or with DDIM.

Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020: the forward process adds
Gaussian noise to an image in T = 1000 small steps, x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε; a U-Net ε_θ(x_t, t) learns
to predict ε (the loss is ‖ε − ε_θ(x_t, t)‖² at a uniformly drawn t), and sampling runs the process backwards
from pure noise, one network call per step. The β schedule is their linear one or Nichol & Dhariwal's cosine
(ICML 2021: --schedule cosine). By default the network predicts v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 instead of ε
(Salimans & Ho, ICLR 2022; --prediction eps is Ho et al.'s): the same network, an easier target where x_t is
nearly all noise. Measured at the default budget it samples far better digits than the ε-network
(benchmarks/RESULTS.md). The weights used for sampling are an exponential moving average of the trained
ones (--ema, as Ho et al.); that average is the run's model: model.keras, what ``dlkit generate`` and
``dlkit evaluate`` reload on any backend.

Song, Meng & Ermon, "Denoising Diffusion Implicit Models", ICLR 2021: the same network, sampled
deterministically (η = 0) on a subsequence of --steps of the T steps (50 by default), 20× fewer network calls.

Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022 (``--conditional``, the default, as for the GAN): the
network also sees the class y, and --label-dropout of the training images are shown with "no label" instead, so
one network predicts both ε(x_t, t, y) and ε(x_t, t, ∅). Sampling mixes them, ε̃ = (1 + w) ε(y) − w ε(∅) with
w = --guidance: in Ho & Salimans' ImageNet runs a larger w gives images that look more like their class, and less
varied ones. Measured on MNIST (benchmarks/RESULTS.md), the classifier score rises with w all the way (9.04 at
w = 0, 9.98 at w = 2) while the Fréchet distance is lowest at w = 0.5 (the default) and grows fast above 1.
``dlkit generate RUN --label 7`` draws sevens; without --label the classes come in turn.

Training draws the timesteps and the noise with NumPy from (seed, epoch), so the numbers are the same on
TensorFlow, JAX and PyTorch and a resumed run repeats them; the update is one ``dlkit.steps.GradientStep``.
Each epoch logs the denoising loss, draws a grid of samples from a fixed noise (plots/samples_epoch_N.png) and
checkpoints the average, the trained network and the optimizer. ``evaluate`` draws --eval-samples images with
DDIM and scores them with ``dlkit.sample_quality`` (classifier score, Fréchet distance on a reference
classifier's features, classes covered; a conditional run also the share the classifier labels as asked).
``dlkit generate RUN -n 64 [--steps K] [--sampler ddpm] [--label D] [--guidance W]`` writes a grid, the samples
as .npz and the denoising path x_T → x_0 (denoising.png).
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, Dataset, GenerateConfig, TrainConfig, option


@dataclass
class DiffusionConfig(TrainConfig):
    epochs: int = option(6, "Passes over the training set.", min=1)
    batch_size: int = option(128, "Images per gradient step.", min=1)
    widths: tuple[int, ...] = option((16, 32, 64), "U-Net channels at full, half and quarter resolution "
                                                   "(multiples of 8: group norm uses 8 groups).", min=8)
    blocks: int = option(1, "Residual blocks per resolution on the way down (one more on the way up).", min=1)
    attention: bool = option(True, "Self-attention at the lowest resolution (--no-attention: none).")
    timesteps: int = option(1000, "Diffusion steps T.", min=2)
    schedule: str = option("linear", "Noise schedule: Ho et al.'s linear β or Nichol & Dhariwal's cosine ᾱ.",
                           choices=("linear", "cosine"))
    learning_rate: float = option(1e-3, "Peak Adam learning rate (after warm-up, then a cosine decay).", min=0.0)
    warmup_steps: int = option(200, "Gradient steps of linear learning-rate warm-up.", min=0)
    prediction: str = option("v", "What the network predicts: v = √ᾱ·ε − √(1 − ᾱ)·x₀ (Salimans & Ho 2022) or the "
                                  "noise ε (Ho et al. 2020).", choices=("v", "eps"))
    ema: float = option(0.999, "Decay of the weights' moving average (the model that samples).", min=0.0, max=1.0)
    conditional: bool = option(True, "Class-conditional network with classifier-free guidance (Ho & Salimans 2022); "
                                     "--no-conditional: unconditional DDPM.")
    label_dropout: float = option(0.1, "Fraction of training images shown without their label (conditional), so "
                                       "the one network also learns the unconditional ε that guidance needs.",
                                  min=0.0, max=1.0)
    guidance: float = option(0.5, "Guidance weight w of the samples previews and evaluate draw (conditional): "
                                   "ε = (1 + w)·ε(y) − w·ε(∅); 0 samples the conditional model as it is.", min=0.0)
    preview_steps: int = option(25, "DDIM steps of the per-epoch sample grid.", min=1)
    eval_samples: int = option(10_000, "Images evaluate draws and scores (DDIM, --eval-steps steps).", min=1)
    eval_steps: int = option(50, "DDIM steps of the images evaluate draws.", min=1)
    sample_batch: int = option(500, "Images per network call when sampling.", min=1)

    def __post_init__(self):
        from dlkit.errors import DlkitError

        if any(w % 8 for w in self.widths) or len(self.widths) < 2:
            raise DlkitError(f"--widths needs two or more multiples of 8 (group norm uses 8 groups), got "
                             f"{','.join(map(str, self.widths))}")
        for name in ("preview_steps", "eval_steps"):
            if getattr(self, name) > self.timesteps:
                raise DlkitError(f"--{name.replace('_', '-')} {getattr(self, name)} is more than the "
                                 f"{self.timesteps} diffusion steps (--timesteps)")


@dataclass
class DiffusionGenerate(GenerateConfig):
    samples: int = option(64, "Images to generate.", min=1, short="-n")
    steps: int = option(50, "DDIM steps (1 … T); the DDPM sampler always takes all T.", min=1)
    sampler: str = option("ddim", "ddim: deterministic, --steps steps (Song et al.); ddpm: ancestral, T steps "
                                  "(Ho et al.).", choices=("ddim", "ddpm"))
    label: int | None = option(None, "Class to generate (a conditional run only; default: all classes in turn).")
    guidance: float | None = option(None, "Guidance weight w (a conditional run only; default: the run's "
                                          "--guidance).", min=0.0)


class Diffusion(Algorithm):
    name = "diffusion"
    summary = "DDPM/DDIM (small U-Net, v-prediction, EMA), class-conditional with guidance: MNIST, Fashion-MNIST"
    config = DiffusionConfig
    datasets = ("mnist", "fashion_mnist", "digits")
    task = "generation"
    headline_metric = "classifier_score"
    generate_config = DiffusionGenerate
    test_config = {"widths": (8, 16), "attention": False, "timesteps": 50, "preview_steps": 4,
                   "eval_samples": 16, "eval_steps": 4, "warmup_steps": 2}
    api_version = 1

    # -- model ---------------------------------------------------------------------------------------
    def build(self, cfg: DiffusionConfig, data: Dataset):
        from dlkit.plugins.diffusion_model import unet

        # the moving average of the weights: the run's model, never trained directly
        return unet(data.input_shape, cfg.widths, cfg.blocks, cfg.attention, classes(cfg, data), cfg.prediction,
                    name="unet_ema")

    def custom_objects(self):
        """Importing the model module registers its layers, so model.keras reloads in safe mode."""
        from dlkit.plugins.diffusion_model import ResBlock, SinusoidalEmbedding, SpatialAttention

        return {"dlkit>ResBlock": ResBlock, "dlkit>SinusoidalEmbedding": SinusoidalEmbedding,
                "dlkit>SpatialAttention": SpatialAttention}

    # -- training ------------------------------------------------------------------------------------
    def train(self, model, data: Dataset, cfg: DiffusionConfig, run):
        import time

        import keras
        import numpy as np

        from dlkit.plots import image_grid
        from dlkit.plugins.diffusion_model import alpha_bars, prediction_of, q_sample, training_target, unet
        from dlkit.steps import GradientStep

        images = to_model_scale(data.x_train)                      # (N, H, W, C) in [−1, 1]
        batch = min(cfg.batch_size, len(images))
        per_epoch = len(images) // batch  # whole batches only: one shape, one compilation
        prediction = prediction_of(model)  # the saved model's, should a run from before --prediction resume
        online = unet(data.input_shape, cfg.widths, cfg.blocks, cfg.attention, classes(cfg, data), prediction,
                      name="unet")
        online.set_weights(model.get_weights())
        optimizer = keras.optimizers.Adam(learning_rate(cfg, per_epoch))
        optimizer.build(online.trainable_variables)  # restore fills built optimizers only
        run.restore(online=online, optimizer=optimizer)
        step = GradientStep(denoising_loss(online), trainable=online, optimizer=optimizer)
        num_classes = classes(cfg, data)
        labels = data.y_train.astype("int32")

        alpha_bars_ = alpha_bars(cfg.schedule, cfg.timesteps)
        fixed_noise = preview_noise(cfg, data.input_shape)
        for epoch in range(run.start + 1, cfg.epochs + 1):
            started = time.perf_counter()
            # batches, timesteps and noise depend on (seed, epoch) only: the same on every backend and on resume
            rng = np.random.default_rng([cfg.seed, epoch])
            order = rng.permutation(len(images))
            losses = []
            for b in range(per_epoch):
                if run.stop_requested:  # Ctrl-C: return between two steps; the last checkpoint stays
                    return None
                x0 = images[order[b * batch:(b + 1) * batch]]
                t = rng.integers(0, cfg.timesteps, batch)
                noise = rng.standard_normal(x0.shape, dtype="float32")
                inputs = [q_sample(x0, t, noise, alpha_bars_), t.astype("int32")]
                if num_classes:  # a --label-dropout share learns ε(x_t, t, ∅), the "no label" of guidance
                    y = labels[order[b * batch:(b + 1) * batch]]
                    inputs.append(np.where(rng.random(batch) < cfg.label_dropout, num_classes, y).astype("int32"))
                target = training_target(x0, t, noise, alpha_bars_, prediction)
                losses.append(step(*inputs, target)["loss"])
                update_average(model, online, cfg.ema, int(optimizer.iterations))
            preview = sample_images(model, cfg, fixed_noise, steps=cfg.preview_steps,
                                    labels=balanced_labels(len(fixed_noise), num_classes))
            image_grid(preview, run.plots_dir / f"samples_epoch_{epoch}.png", columns=8)
            seconds = time.perf_counter() - started
            run.log(epoch, loss=float(np.mean(losses)), learning_rate=float(current_lr(optimizer)))
            run.checkpoint(epoch, model, online=online, optimizer=optimizer)
            print(f"epoch {epoch}: loss {np.mean(losses):.4f}, {seconds:.1f} s", flush=True)
        return None

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, model, data: Dataset, cfg: DiffusionConfig) -> dict:
        import time

        import numpy as np

        from dlkit.plugins.diffusion_model import class_count
        from dlkit.sample_quality import reference_classifier, sample_quality

        noise = np.random.default_rng([cfg.seed, 10_000]).standard_normal((cfg.eval_samples, *data.input_shape),
                                                                           "float32")
        labels = balanced_labels(cfg.eval_samples, class_count(model))
        started = time.perf_counter()
        images = sample_images(model, cfg, noise, steps=cfg.eval_steps, labels=labels)
        seconds = time.perf_counter() - started
        quality = sample_quality(images, cfg.data)
        metrics = {"classifier_score": float(quality["classifier_score"])}
        metrics.update(flatten({k: v for k, v in quality.items() if k != "classifier_score"}))
        if labels is not None:  # how often the reference classifier sees the class that was asked for
            predicted = reference_classifier(cfg.data, echo=lambda *_: None).probabilities(images).argmax(axis=1)
            metrics.update(label_accuracy=float(np.mean(predicted == labels)), guidance=cfg.guidance)
        metrics.update(test_loss=test_loss(model, data, cfg), sampler="ddim", sampling_steps=cfg.eval_steps,
                       sampling_seconds=round(seconds, 2), samples_per_s=round(cfg.eval_samples / seconds, 2))
        return metrics

    def extra_plots(self, model, data: Dataset, cfg: DiffusionConfig, run) -> None:
        from dlkit.plots import image_grid
        from dlkit.plugins.diffusion_model import class_count, sample

        # the preview grid's noise and batch of 16 (one compiled shape); the path of the first 8
        noise = preview_noise(cfg, data.input_shape)
        _, path = sample(model, noise, cfg.schedule, cfg.timesteps, steps=min(50, cfg.timesteps), keep=8,
                         labels=balanced_labels(len(noise), class_count(model)), guidance=cfg.guidance)
        image_grid(path_grid(path), run.plots_dir / "denoising.png", columns=path.shape[1])

    # -- generation ----------------------------------------------------------------------------------
    def generate(self, model, cfg: DiffusionConfig, options: DiffusionGenerate, out, echo) -> dict:
        import time

        import numpy as np

        from dlkit.errors import DlkitError
        from dlkit.plots import image_grid
        from dlkit.plugins.diffusion_model import class_count, sample

        if options.steps > cfg.timesteps:
            raise DlkitError(f"--steps {options.steps} is more than the model's {cfg.timesteps} diffusion steps "
                             f"(T); give 1 … {cfg.timesteps}")
        num_classes = class_count(model)
        for name, value in (("label", options.label), ("guidance", options.guidance)):
            if value is not None and not num_classes:
                raise DlkitError(f"--{name} needs a conditional diffusion run; this run is unconditional "
                                 f"(train one with --conditional)")
        if options.label is not None and not 0 <= options.label < num_classes:
            raise DlkitError(f"--label {options.label} is not a class of {cfg.data}: give 0..{num_classes - 1}")
        guidance = cfg.guidance if options.guidance is None else options.guidance
        shape = tuple(model.inputs[0].shape[1:])
        rng = np.random.default_rng(options.seed)
        noise = rng.standard_normal((options.samples, *shape), "float32")
        labels = balanced_labels(options.samples, num_classes)
        if options.label is not None:
            labels[:] = options.label
        steps = options.steps if options.sampler == "ddim" else cfg.timesteps
        asked = "" if labels is None else f", {'class ' + str(options.label) if options.label is not None else 'classes in turn'}, guidance {guidance:g}"
        echo(f"{options.samples} samples, {options.sampler} in {steps} steps{asked} …")
        started = time.perf_counter()
        x, path = sample(model, noise, cfg.schedule, cfg.timesteps, sampler=options.sampler, steps=steps, rng=rng,
                         batch_size=cfg.sample_batch, keep=min(8, options.samples), labels=labels, guidance=guidance)
        seconds = time.perf_counter() - started
        images = from_model_scale(x)
        columns = 10 if labels is not None and options.label is None else None
        image_grid(images, out / "samples.png", columns=columns)
        image_grid(path_grid(path), out / "denoising.png", columns=path.shape[1])
        np.savez_compressed(out / "samples.npz", images=images, denoising_path=from_model_scale(path),
                            **({"labels": labels} if labels is not None else {}))
        rate = options.samples / seconds
        echo(f"{seconds:.1f} s, {rate:.1f} samples/s: samples.png, samples.npz, denoising.png")
        return {"files": ["samples.png", "samples.npz", "denoising.png"], "samples": options.samples,
                "sampler": options.sampler, "steps": steps, "seconds": round(seconds, 3),
                "samples_per_s": round(rate, 3), "conditional": bool(num_classes), "label": options.label,
                "guidance": guidance if num_classes else None}


# -- pieces --------------------------------------------------------------------------------------------
def to_model_scale(images):
    """[0, 1] images → the [−1, 1] the network works in (Ho et al. scale the data so)."""
    return (images.astype("float32") * 2.0 - 1.0).astype("float32")


def from_model_scale(x):
    import numpy as np

    return np.clip((x + 1.0) / 2.0, 0.0, 1.0).astype("float32")


def preview_noise(cfg: DiffusionConfig, shape: tuple):
    """The fixed x_T of the per-epoch sample grids: 16 images, drawn from the seed alone."""
    import numpy as np

    return np.random.default_rng([cfg.seed, 7]).standard_normal((16, *shape), "float32")


def sample_images(model, cfg: DiffusionConfig, noise, *, steps: int, labels=None):
    """DDIM images in [0, 1] from ``noise`` (and ``labels``, guided by --guidance, for a conditional model)."""
    from dlkit.plugins.diffusion_model import sample

    return from_model_scale(sample(model, noise, cfg.schedule, cfg.timesteps, steps=steps,
                                   batch_size=cfg.sample_batch, labels=labels, guidance=cfg.guidance))


def classes(cfg: DiffusionConfig, data: Dataset) -> int:
    """Classes the network is conditioned on: the dataset's when --conditional, else 0."""
    return data.num_classes if cfg.conditional else 0


def balanced_labels(n: int, num_classes: int):
    """0, 1, …, num_classes − 1, 0, 1, … (int32): every class equally often; None for an unconditional model."""
    import numpy as np

    return (np.arange(n) % num_classes).astype("int32") if num_classes else None


def path_grid(path):
    """(rows, columns, H, W, C) in [−1, 1] → the images of a grid, row by row, in [0, 1]."""
    return from_model_scale(path.reshape(-1, *path.shape[2:]))


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested dicts as one level for metrics.json: {"reference": {"test_accuracy": …}} → reference_test_accuracy."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value.tolist() if hasattr(value, "tolist") else value
    return flat


def denoising_loss(network):
    """The loss of one GradientStep: ‖target − network(x_t, t[, y])‖² averaged over pixels and batch, the
    target ε (Ho et al.'s L_simple) or v (``training_target``). Called as loss(x_t, t, target) or, for a
    conditional network, loss(x_t, t, labels, target)."""
    from keras import ops

    def loss(*batch):
        *inputs, target = batch
        return ops.mean(ops.square(target - network(list(inputs), training=True)))

    return loss


def update_average(average, network, decay: float, step: int) -> None:
    """θ̄ ← d θ̄ + (1 − d) θ, with d = min(decay, (1 + step)/(10 + step)): the average follows closely at first."""
    d = min(decay, (1.0 + step) / (10.0 + step))
    for mine, theirs in zip(average.trainable_variables, network.trainable_variables):
        mine.assign(d * mine.value + (1.0 - d) * theirs.value)


def learning_rate(cfg: DiffusionConfig, per_epoch: int):
    """Linear warm-up to --learning-rate, then a cosine to a tenth of it at the last step of the budget."""
    import keras

    total = max(1, cfg.epochs * per_epoch)
    warmup = min(cfg.warmup_steps, total - 1)
    return keras.optimizers.schedules.CosineDecay(0.0 if warmup else cfg.learning_rate, max(1, total - warmup),
                                                  alpha=0.1, warmup_target=cfg.learning_rate if warmup else None,
                                                  warmup_steps=warmup)


def current_lr(optimizer) -> float:
    import keras

    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def test_loss(model, data: Dataset, cfg: DiffusionConfig, limit: int = 1000) -> float:
    """The training loss (ε or v, the model's target) of the averaged network on up to ``limit`` test images,
    timesteps and noise seeded: comparable across backends and runs of the same --prediction."""
    import numpy as np

    from dlkit.plugins.diffusion_model import alpha_bars, class_count, predict, prediction_of, q_sample, training_target

    x0 = to_model_scale(data.x_test[:limit])
    rng = np.random.default_rng([cfg.seed, 20_000])
    t = rng.integers(0, cfg.timesteps, len(x0))
    noise = rng.standard_normal(x0.shape, dtype="float32")
    alpha_bars_ = alpha_bars(cfg.schedule, cfg.timesteps)
    x_t = q_sample(x0, t, noise, alpha_bars_)
    labels = data.y_test[:limit].astype("int32") if class_count(model) else None  # conditional: the true labels
    out = predict(model, x_t, t, min(cfg.sample_batch, len(x0)), labels=labels)
    return float(np.mean(np.square(training_target(x0, t, noise, alpha_bars_, prediction_of(model)) - out)))
