"""shape_gan: the shape of a GAN plugin (Goodfellow et al., 2014): two models, two optimizers, no labels.

The generator is the run's model (model.keras); the discriminator lives on the plugin. The loop is the
plugin's own: ``dlkit.steps.GradientStep`` updates the discriminator, then the generator, on every batch;
each epoch is logged and checkpointed with the discriminator and both optimizers, which ``run.restore``
brings back on ``--resume``. Each epoch draws its shuffling and noise from ``(seed, epoch)``, so a
resumed run repeats exactly the epochs an uninterrupted one would have trained. The data are
scikit-learn's 8×8 digits scaled to [-1, 1]; ``dlkit generate`` writes a PNG grid and an .npz.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, Dataset, GenerateConfig, TrainConfig, option


@dataclass
class GANConfig(TrainConfig):
    epochs: int = option(50, "Passes over the training images.", min=1)
    batch_size: int = option(64, "Real images per discriminator step.", min=1)
    latent_dim: int = option(16, "Size of the generator's noise vector.", min=1)
    hidden: int = option(128, "Width of the hidden layer of both models.", min=1)
    learning_rate: float = option(1e-3, "Adam learning rate of both optimizers.", min=0.0)


@dataclass
class GANGenerate(GenerateConfig):
    count: int = option(16, "Images to draw.", min=1)


class GAN(Algorithm):
    name = "shape_gan"
    summary = "Shape test: MLP GAN on 8x8 digits (no labels, two models, a GradientStep loop, generate)"
    config = GANConfig
    datasets = ("digits",)
    task = "generation"
    headline_metric = "moment_gap"
    generate_config = GANGenerate
    test_config = {"epochs": 2, "train_samples": 256, "hidden": 32}
    api_version = 1

    def load_data(self, cfg: GANConfig) -> Dataset:
        import numpy as np
        from sklearn.datasets import load_digits

        images = (load_digits().images.astype("float32") / 8.0 - 1.0)[..., None]  # 0..16 → [-1, 1]
        order = np.random.default_rng(0).permutation(len(images))
        train, test = images[order[:1500]], images[order[1500:]]
        return Dataset(name="digits", x_train=train, y_train=None, x_test=test, y_test=None,
                       input_shape=train.shape[1:])

    def build(self, cfg: GANConfig, data: Dataset):
        import keras
        from keras import layers

        pixels = int(data.input_shape[0] * data.input_shape[1] * data.input_shape[2])
        generator = keras.Sequential([
            keras.Input((cfg.latent_dim,)),
            layers.Dense(cfg.hidden), layers.LeakyReLU(0.2),
            layers.Dense(pixels, activation="tanh"), layers.Reshape(data.input_shape),
        ], name="generator")
        self.discriminator = keras.Sequential([
            keras.Input(data.input_shape),
            layers.Flatten(), layers.Dense(cfg.hidden), layers.LeakyReLU(0.2), layers.Dense(1),
        ], name="discriminator")
        return generator

    def train(self, model, data: Dataset, cfg: GANConfig, run):
        import keras
        import numpy as np
        from keras import ops

        from dlkit.steps import GradientStep

        generator, discriminator = model, self.discriminator
        d_optimizer = keras.optimizers.Adam(cfg.learning_rate, beta_1=0.5)
        g_optimizer = keras.optimizers.Adam(cfg.learning_rate, beta_1=0.5)
        d_optimizer.build(discriminator.trainable_variables)  # restore() fills built optimizers
        g_optimizer.build(generator.trainable_variables)
        state = run.restore(discriminator=discriminator, d_optimizer=d_optimizer, g_optimizer=g_optimizer)
        self.fixed_noise = state.get("fixed_noise", self._noise(cfg.seed, 16, cfg.latent_dim))

        def d_loss(real, noise):
            real_logits = discriminator(real, training=True)
            fake_logits = discriminator(generator(noise, training=True), training=True)
            loss = ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))
            return loss, {"real_score": ops.mean(ops.sigmoid(real_logits))}

        def g_loss(noise):
            return ops.mean(ops.softplus(-discriminator(generator(noise, training=True), training=True)))

        d_step = GradientStep(d_loss, trainable=discriminator, optimizer=d_optimizer, uses=generator)
        g_step = GradientStep(g_loss, trainable=generator, optimizer=g_optimizer, uses=discriminator)
        images = data.x_train
        batch = min(cfg.batch_size, len(images))
        for epoch in range(run.start, cfg.epochs):
            rng = np.random.default_rng([cfg.seed, epoch])  # the same epoch whether resumed or not
            order = rng.permutation(len(images))
            logs = []
            for first in range(0, len(images) - batch + 1, batch):  # whole batches: one compiled shape
                if run.stop_requested:
                    return None
                real = images[order[first:first + batch]]
                d = d_step(real, rng.standard_normal((batch, cfg.latent_dim), dtype="float32"))
                g = g_step(rng.standard_normal((batch, cfg.latent_dim), dtype="float32"))
                logs.append((d["loss"], g["loss"], d["real_score"]))
            d_mean, g_mean, score = np.mean(logs, axis=0)
            run.log(epoch + 1, d_loss=d_mean, g_loss=g_mean, real_score=score,
                    d_steps=int(ops.convert_to_numpy(d_optimizer.iterations)))
            run.checkpoint(epoch + 1, generator, discriminator=discriminator, d_optimizer=d_optimizer,
                           g_optimizer=g_optimizer, fixed_noise=self.fixed_noise)
        return None

    def evaluate(self, model, data: Dataset, cfg: GANConfig) -> dict:
        """How far the generated pixels' mean and spread are from the test images' (0 = the same)."""
        import keras

        fake = keras.ops.convert_to_numpy(model(self._noise(cfg.seed + 1, 512, cfg.latent_dim), training=False))
        real = data.x_test
        gap = abs(fake.mean() - real.mean()) + abs(fake.std() - real.std())
        return {"moment_gap": float(gap), "fake_mean": float(fake.mean()), "fake_std": float(fake.std()),
                "real_mean": float(real.mean()), "real_std": float(real.std()), "test_samples": len(real)}

    def extra_plots(self, model, data: Dataset, cfg: GANConfig, run) -> None:
        import keras

        noise = getattr(self, "fixed_noise", None)
        if noise is None:
            noise = self._noise(cfg.seed, 16, cfg.latent_dim)
        save_grid(keras.ops.convert_to_numpy(model(noise, training=False)), run.plots_dir / "samples.png")

    def generate(self, model, cfg: GANConfig, options: GANGenerate, out, echo) -> dict:
        import keras
        import numpy as np

        noise = self._noise(options.seed, options.count, cfg.latent_dim)
        images = keras.ops.convert_to_numpy(model(noise, training=False))
        np.savez(out / "samples.npz", images=images, noise=noise)
        save_grid(images, out / "samples.png")
        echo(f"{len(images)} images of {images.shape[1]}x{images.shape[2]} → samples.png, samples.npz")
        return {"files": ["samples.png", "samples.npz"], "count": len(images)}

    @staticmethod
    def _noise(seed: int, count: int, latent_dim: int):
        import numpy as np

        return np.random.default_rng(seed).standard_normal((count, latent_dim), dtype="float32")


def save_grid(images, path) -> None:
    """Images in [-1, 1], (N, H, W, 1), as one grey PNG in rows of up to 8."""
    import numpy as np
    from matplotlib import image

    n, h, w = images.shape[:3]
    columns = min(8, n)
    rows = -(-n // columns)
    grid = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1), "float32")
    for i, picture in enumerate(images[..., 0]):
        r, c = divmod(i, columns)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = (picture + 1) / 2
    image.imsave(path, np.clip(grid, 0, 1), cmap="gray", vmin=0, vmax=1)
