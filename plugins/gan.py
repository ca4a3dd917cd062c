"""DCGAN on MNIST and Fashion-MNIST, class-conditional by default so a user can ask for a given digit.

Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional Generative
Adversarial Networks", ICLR 2016: a transposed-convolution generator G against a strided-convolution
discriminator D, batch norm, LeakyReLU, Adam(2e-4, β₁ = 0.5). Goodfellow et al. (NeurIPS 2014)'s
non-saturating losses, with D's output a logit ℓ and softplus(t) = log(1 + eᵗ):

    L_D = E_x[softplus(−ℓ(x))] + E_z[softplus(ℓ(G(z)))]      (binary cross-entropy, real 1 / fake 0)
    L_G = E_z[softplus(−ℓ(G(z)))]                            (−log D(G(z)): strong gradients early on)

Mirza & Osindero, "Conditional Generative Adversarial Nets", 2014 (``--conditional``, the default): G and
D both see the class label y; real images come with their labels, generated ones with the classes in
turn (0, 1, …, 9, 0, …: every batch class-balanced), so ``dlkit generate RUN --label 7`` draws sevens.
The networks are in dlkit/plugins/gan_model.py.

One epoch is a pass over the shuffled training set in full batches; each batch is one D step and then one
G step, each a ``dlkit.steps.GradientStep`` with its own Adam, identical on TensorFlow, JAX and PyTorch.
Shuffling, noise and fake labels come from NumPy generators seeded with (seed, epoch), so a resumed run
draws exactly what an uninterrupted one would, on any backend. After every epoch: a row of history.csv
(d_loss, g_loss, D(x) and D(G(z)) as probabilities), plots/samples_epoch_NNN.png (the same 100 latents
every epoch; conditional: column k is class k), and a checkpoint of G, D and both optimizers. After the
last epoch G's batch-norm statistics are recomputed over --bn-batches batches of its own noise
(``dlkit.batchnorm``): sampling runs in inference mode, and the moving averages lag the weights.

The run's model (``model.keras``) is the generator: images in [0, 1] from ``noise`` (and ``label``).
``evaluate`` draws --eval-samples images (class-balanced labels when conditional) and scores them with
``dlkit.sample_quality``'s reference classifier: classifier score (the Inception score's recipe on an
MNIST classifier), Fréchet distance on its features, classes covered, KL of the class histogram to the
test set's; a conditional GAN adds ``label_accuracy``, the fraction the classifier labels as asked.

Defaults, as measured on this project's shared 2-core CPU (benchmarks/gan.py; load average 11-20):
width 32 and 10 epochs of batch 128 keep the default MNIST run to 1,341 s of training on TensorFlow, and
reach a classifier score of 9.24 (real test images: 9.68) with all 10 classes covered and a Fréchet
distance of 25.7. The default is conditional because the unconditional DCGAN at the same budget reached
6.52 and a distance of 122.6 (--no-conditional). Seconds per step (one D and one G update, the first
epoch's compiling included, load ~17): TensorFlow 0.74, JAX 2.2, PyTorch 7.0; train with
``--backend tensorflow``.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, Dataset, GenerateConfig, TrainConfig, option

#: The per-epoch sample grid: this many fixed latents, 10 columns (conditional: column k is class k).
GRID = 100
#: Noise of the evaluation's samples comes from (seed, EVAL_STREAM), of the batch-norm re-estimate from
#: (seed, BN_STREAM): never a training stream.
EVAL_STREAM, BN_STREAM = 1_000_000, 1_000_001


@dataclass
class GANConfig(TrainConfig):
    epochs: int = option(10, "Passes over the training set.", min=1)
    batch_size: int = option(128, "Real images per step (and as many generated ones).", min=1)
    conditional: bool = option(True, "Class-conditional GAN (Mirza & Osindero 2014); --no-conditional: DCGAN alone.")
    latent: int = option(100, "Size of the noise vector z ~ N(0, I).", min=1)
    width: int = option(32, "Channels of the generator's last and the discriminator's first hidden layer "
                            "(the other hidden layer has twice as many).", min=1)
    learning_rate: float = option(2e-4, "Adam learning rate of both networks.", min=0.0)
    beta_1: float = option(0.5, "Adam β₁ of both networks (DCGAN: 0.5).", min=0.0, max=1.0)
    eval_samples: int = option(10_000, "Generated images scored by evaluate.", min=1)

    def __post_init__(self):
        if self.patience:
            from dlkit.errors import DlkitError

            raise DlkitError("--patience stops on a validation loss, and a GAN has none to stop on: leave it at 0")


@dataclass
class GANGenerate(GenerateConfig):
    samples: int = option(64, "Images to generate.", min=1, short="-n")
    label: int | None = option(None, "Class to generate (a conditional run only; default: all classes in turn).")


class GAN(Algorithm):
    name = "gan"
    summary = "DCGAN (Radford et al. 2016), class-conditional by default: MNIST, Fashion-MNIST; dlkit generate draws images"
    config = GANConfig
    datasets = ("mnist", "fashion_mnist", "digits")
    task = "generation"
    headline_metric = "classifier_score"
    generate_config = GANGenerate
    test_config = {"latent": 8, "width": 4, "eval_samples": 100}
    api_version = 1

    def load_data(self, cfg: GANConfig) -> Dataset:
        from dlkit import data

        return data.load(cfg.data)

    def build(self, cfg: GANConfig, data: Dataset):
        from dlkit.plugins.gan_model import discriminator, generator

        classes = data.num_classes if cfg.conditional else 0
        self.discriminator = discriminator(data.input_shape, width=cfg.width, num_classes=classes, seed=cfg.seed)
        return generator(data.input_shape, latent=cfg.latent, width=cfg.width, num_classes=classes, seed=cfg.seed)

    # -- training ------------------------------------------------------------------------------------
    def train(self, model, data: Dataset, cfg: GANConfig, run):
        import time

        import keras
        import numpy as np

        from dlkit import plots
        from dlkit.steps import GradientStep

        generator, discriminator = model, self.discriminator
        d_optimizer = keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.beta_1)
        g_optimizer = keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.beta_1)
        d_optimizer.build(discriminator.trainable_variables)  # restore fills built optimizers only
        g_optimizer.build(generator.trainable_variables)
        run.restore(discriminator=discriminator, d_optimizer=d_optimizer, g_optimizer=g_optimizer)
        d_loss, g_loss = adversarial_losses(generator, discriminator, cfg.conditional)
        d_step = GradientStep(d_loss, trainable=discriminator, optimizer=d_optimizer, uses=generator)
        g_step = GradientStep(g_loss, trainable=generator, optimizer=g_optimizer, uses=discriminator)

        images, labels = data.x_train, data.y_train.astype("int32")
        classes = data.num_classes
        batch = min(cfg.batch_size, len(images))  # full batches only: one compiled shape per step
        grid_noise, grid_labels = latents(np.random.default_rng([cfg.seed, GRID]), GRID, cfg.latent, classes)
        started = time.perf_counter()
        for epoch in range(run.start + 1, cfg.epochs + 1):
            rng = np.random.default_rng([cfg.seed, epoch])
            order = rng.permutation(len(images))
            logs: dict[str, list[float]] = {}
            for first in range(0, len(order) - batch + 1, batch):
                if run.stop_requested:  # Ctrl-C: return between two steps; the last checkpoint stays
                    return None
                idx = order[first:first + batch]
                noise, fake_labels = latents(rng, batch, cfg.latent, classes)
                d_logs = d_step(images[idx], labels[idx], noise, fake_labels)
                noise, fake_labels = latents(rng, batch, cfg.latent, classes)
                g_logs = g_step(noise, fake_labels)
                for name, value in (("d_loss", d_logs["loss"]), ("g_loss", g_logs["loss"]),
                                    ("d_real", d_logs["d_real"]), ("d_fake", d_logs["d_fake"])):
                    logs.setdefault(name, []).append(value)
            means = {name: float(np.mean(values)) for name, values in logs.items()}
            run.log(epoch, **means)
            grid = sample(generator, grid_noise, grid_labels if cfg.conditional else None)
            plots.image_grid(grid, run.plots_dir / f"samples_epoch_{epoch:03d}.png", columns=10)
            run.checkpoint(epoch, generator, discriminator=discriminator, d_optimizer=d_optimizer,
                           g_optimizer=g_optimizer)
            print(f"epoch {epoch}/{cfg.epochs}: d_loss {means['d_loss']:.4f}, g_loss {means['g_loss']:.4f}, "
                  f"D(x) {means['d_real']:.3f}, D(G(z)) {means['d_fake']:.3f}, "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        if cfg.bn_batches:  # sampling uses the moving statistics: set them to the final generator's own
            rng = np.random.default_rng([cfg.seed, BN_STREAM])
            batches = (generator_inputs(*latents(rng, batch, cfg.latent, classes), cfg.conditional)
                       for _ in range(cfg.bn_batches))
            run.reestimate_batch_norm(generator, batches, cfg.bn_batches)
        return None

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, model, data: Dataset, cfg: GANConfig) -> dict:
        import numpy as np

        from dlkit.sample_quality import reference_classifier, sample_quality

        noise, labels = latents(np.random.default_rng([cfg.seed, EVAL_STREAM]), cfg.eval_samples, cfg.latent,
                                data.num_classes)
        conditional = is_conditional(model)
        images = sample(model, noise, labels if conditional else None)
        found = sample_quality(images, cfg.data, echo=lambda *_: None)
        metrics = {}
        for name, value in found.items():  # metrics.json is flat: the reference's figures get a prefix
            if isinstance(value, dict):
                metrics.update({f"reference_{key}": item for key, item in value.items()})
            else:
                metrics[name] = value
        if conditional:
            predicted = reference_classifier(cfg.data, echo=lambda *_: None).probabilities(images).argmax(axis=1)
            metrics["label_accuracy"] = float(np.mean(predicted == labels))
        return metrics

    # -- generation ----------------------------------------------------------------------------------
    def custom_objects(self):
        return {}  # built-in layers only

    def generate(self, model, cfg: GANConfig, options: GANGenerate, out, echo) -> dict:
        import numpy as np

        from dlkit import plots
        from dlkit.errors import DlkitError

        classes = class_count(model)
        if options.label is not None:
            if not classes:
                raise DlkitError("--label needs a conditional GAN; this run is unconditional "
                                 "(train one with --conditional)")
            if not 0 <= options.label < classes:
                raise DlkitError(f"--label {options.label} is not a class of {cfg.data}: give 0..{classes - 1}")
        rng = np.random.default_rng(options.seed)
        noise, labels = latents(rng, options.samples, cfg.latent, classes or 1)
        if options.label is not None:
            labels[:] = options.label
        images = sample(model, noise, labels if classes else None)
        plots.image_grid(images, out / "samples.png", columns=10 if classes and options.label is None else None)
        arrays = {"images": images, "noise": noise, **({"labels": labels} if classes else {})}
        np.savez_compressed(out / "samples.npz", **arrays)
        rows, columns = 8, 10
        ends = rng.standard_normal((rows, 2, cfg.latent), dtype="float32")
        path = slerp(ends[:, 0], ends[:, 1], np.linspace(0.0, 1.0, columns))        # (rows, columns, latent)
        row_labels = np.full(rows, options.label) if options.label is not None else np.arange(rows) % max(classes, 1)
        strip = sample(model, path.reshape(rows * columns, -1),
                       np.repeat(row_labels, columns).astype("int32") if classes else None)
        plots.image_grid(strip, out / "interpolation.png", columns=columns)
        which = f"class {options.label}" if options.label is not None else ("all classes" if classes else "unconditional")
        echo(f"{options.samples} samples ({which}) → {out / 'samples.png'}, {out / 'samples.npz'}; "
             f"interpolation {rows}×{columns} → {out / 'interpolation.png'}")
        return {"files": ["samples.png", "samples.npz", "interpolation.png"], "samples": options.samples,
                "label": options.label, "conditional": bool(classes),
                "interpolation": f"{rows} rows × {columns} columns, spherical between two latents per row"}


# -- the pieces the hooks share ----------------------------------------------------------------------------
def adversarial_losses(generator, discriminator, conditional: bool):
    """DCGAN's discriminator and (non-saturating) generator losses, as GradientStep loss functions."""
    from keras import ops

    def given(x, labels):
        return generator_inputs(x, labels, conditional)  # the discriminator takes the same pairing

    def d_loss(real, real_labels, noise, fake_labels):
        fake = generator(given(noise, fake_labels), training=True)              # (B, H, W, C)
        real_logits = discriminator(given(real, real_labels), training=True)    # (B, 1)
        fake_logits = discriminator(given(fake, fake_labels), training=True)
        loss = ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))
        return loss, {"d_real": ops.mean(ops.sigmoid(real_logits)), "d_fake": ops.mean(ops.sigmoid(fake_logits))}

    def g_loss(noise, fake_labels):
        fake = generator(given(noise, fake_labels), training=True)
        return ops.mean(ops.softplus(-discriminator(given(fake, fake_labels), training=True)))

    return d_loss, g_loss


def latents(rng, n: int, latent: int, classes: int):
    """n noise vectors z ~ N(0, I) (float32) and n labels 0, 1, …, classes − 1, 0, 1, … (int32)."""
    import numpy as np

    return rng.standard_normal((n, latent), dtype="float32"), (np.arange(n) % classes).astype("int32")


def slerp(a, b, t):
    """Spherical interpolation between rows of ``a`` and ``b`` at fractions ``t``: (rows, len(t), latent).

    Gaussian latents live near a sphere of radius √latent; a straight line between two of them dips to
    radius ≈ √(latent/2) halfway, where the generator never saw a z. The great circle keeps the norm
    (White, "Sampling Generative Networks", 2016).
    """
    import numpy as np

    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))[:, None, None]                 # (rows, 1, 1)
    t = np.asarray(t, dtype="float32")[None, :, None]                         # (1, steps, 1)
    s = np.sin(omega)
    return ((np.sin((1 - t) * omega) / s) * a[:, None] + (np.sin(t * omega) / s) * b[:, None]).astype("float32")


def generator_inputs(noise, labels, conditional: bool):
    """What the generator takes: the noise, and the labels when it is conditional."""
    return [noise, labels] if conditional else noise


def is_conditional(model) -> bool:
    return len(model.inputs) == 2


def class_count(model) -> int:
    """Classes a conditional generator knows (the rows of its label embedding); 0 when unconditional."""
    return model.get_layer("label_embedding").input_dim if is_conditional(model) else 0


def sample(model, noise, labels=None, batch_size: int = 500):
    """Images in [0, 1] from the generator (batch norm with its moving statistics), as a NumPy array."""
    import numpy as np

    inputs = generator_inputs(noise, labels, labels is not None)
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0), dtype="float32")
