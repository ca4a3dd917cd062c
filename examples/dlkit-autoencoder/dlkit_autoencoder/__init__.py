"""Convolutional denoising autoencoder on MNIST / Fashion-MNIST — a third-party dlkit plugin.

Vincent, Larochelle, Bengio & Manzagol, "Extracting and composing robust features with denoising
autoencoders", ICML 2008: corrupt the input with masking noise (a random fraction of pixels set to 0)
and train the network to reconstruct the clean image. Encoder and decoder are convolutional (Masci et
al., "Stacked convolutional auto-encoders for hierarchical feature extraction", ICANN 2011):
Conv(s2)-Conv(s2)-Dense(code) and back with transposed convolutions. Reported: test PSNR (headline),
MSE and binary cross-entropy, and a picture of originals, reconstructions and denoised inputs.

Written only against dlkit.api, as any third-party plugin is. This module is the light entry that
``dlkit list`` imports (the standard library and dlkit.api only); the layers and the network live in
``dlkit_autoencoder.model``, which imports Keras at its top and is imported inside the hooks, after
dlkit has chosen the backend. The model uses keras.ops only, so it trains on all three backends.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, TrainConfig, option


@dataclass
class AutoencoderConfig(TrainConfig):
    epochs: int = option(5, "Passes over the training set.", min=1)
    batch_size: int = option(64, "Examples per gradient step.", min=1)
    latent: int = option(32, "Size of the bottleneck code.", min=1)
    filters: int = option(32, "Filters of the first convolution (the second has twice as many).", min=1)
    noise: float = option(0.25, "Masking noise: fraction of input pixels zeroed while training (0 = plain "
                                "autoencoder).", min=0.0, max=0.9)
    # 3e-3 with batches of 64: 20 dB PSNR after two epochs on 10k MNIST images, where 1e-3 / 128 is
    # still at 13 dB, a blur of the mean digit
    learning_rate: float = option(3e-3, "Adam learning rate.", min=0.0)


class Autoencoder(Algorithm):
    name = "autoencoder"
    summary = "Convolutional denoising autoencoder (masking noise): MNIST, Fashion-MNIST"
    config = AutoencoderConfig
    datasets = ("mnist", "fashion_mnist", "digits")
    backends = ("tensorflow", "jax", "torch")
    task = "reconstruction"  # not "classification": no accuracy, no confusion matrix
    headline_metric = "psnr"
    test_config = {"filters": 4, "latent": 4}  # tiny, for dlkit's contract test
    api_version = 1

    def load_data(self, cfg: AutoencoderConfig):
        """The image datasets through dlkit's loaders (the default only for task "classification")."""
        from dlkit import data

        return data.load(cfg.data)

    def build(self, cfg: AutoencoderConfig, data):
        import keras

        from dlkit_autoencoder.model import denoising_autoencoder

        model = denoising_autoencoder(data.input_shape, latent=cfg.latent, filters=cfg.filters, noise=cfg.noise,
                                      seed=cfg.seed)
        # pixels lie in [0, 1]: cross-entropy per pixel gives sharper digits than MSE
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="binary_crossentropy",
                      metrics=["mse"])
        return model

    def train(self, model, data, cfg: AutoencoderConfig, run):
        """The image is both input and target; run.fit checkpoints every epoch and can resume."""
        validation = (data.x_val, data.x_val) if data.x_val is not None else None
        return run.fit(model, data.x_train, data.x_train, validation_data=validation)

    def evaluate(self, model, data, cfg: AutoencoderConfig):
        """Reconstruction of the clean test images: PSNR (dB, per image, averaged), MSE, cross-entropy."""
        import numpy as np

        x = np.asarray(data.x_test, dtype="float64")
        recon = np.asarray(model.predict(data.x_test, batch_size=cfg.batch_size, verbose=0), dtype="float64")
        per_image = ((recon - x) ** 2).reshape(len(x), -1).mean(axis=1)
        psnr = 10.0 * np.log10(1.0 / np.maximum(per_image, 1e-10))  # peak value 1: pixels in [0, 1]
        p = np.clip(recon, 1e-7, 1 - 1e-7)
        bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).mean()
        return {"psnr": float(psnr.mean()), "mse": float(per_image.mean()), "bce": float(bce),
                "test_samples": int(len(x))}

    def extra_plots(self, model, data, cfg: AutoencoderConfig, run):
        """plots/reconstructions.png: originals, reconstructions, masked inputs and their denoising."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        originals = np.asarray(data.x_test[:10])
        rate = cfg.noise or 0.25
        masked = originals * (np.random.default_rng(cfg.seed).random(originals.shape) >= rate)
        rows = [("original", originals), ("reconstructed", model.predict(originals, verbose=0)),
                (f"{rate:.0%} masked", masked), ("denoised", model.predict(masked, verbose=0))]
        fig, axes = plt.subplots(len(rows), len(originals), figsize=(1.1 * len(originals), 1.25 * len(rows)),
                                 squeeze=False)
        for r, (label, images) in enumerate(rows):
            for c, image in enumerate(np.asarray(images)):
                ax = axes[r][c]
                ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[r][0].set_ylabel(label, fontsize=8)
        fig.suptitle(f"autoencoder on {data.name}, {cfg.epochs} epoch(s)")
        fig.tight_layout()
        fig.savefig(run.plots_dir / "reconstructions.png", dpi=110)
        plt.close(fig)

    def custom_objects(self):
        """Importing the model module registers its layer, so model.keras reloads in safe mode."""
        from dlkit_autoencoder.model import MaskingNoise

        return {"dlkit_autoencoder>MaskingNoise": MaskingNoise}
