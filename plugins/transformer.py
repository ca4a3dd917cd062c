"""Transformer encoder classifier on the IMDB reviews (Vaswani et al., "Attention Is All You Need", 2017).

Token ids (B, L) → token + learned position embeddings → ``--depth`` encoder blocks (multi-head
self-attention, Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + M) V with M masking the padding, then a
ReLU feed-forward network; each sub-layer followed by dropout, a residual connection and layer
normalization) → mean over the real tokens → softmax over negative/positive. The layers are in
plugins/transformer_model.py.

Data, vocabulary, metrics and ``dlkit predict`` are the recurrent plugins' (plugins/text_classifier.py):
the last ``--sequence-length`` tokens of each review, front-padded, with a vocabulary adapted on the
training reviews and saved with the run. Trained with AdamW (Loshchilov & Hutter, ICLR 2019) whose
rate rises linearly over the first ``--warmup`` of the steps, as the paper's schedule does, then falls
to 0 on a cosine; a tenth of the training reviews is held out so that training stops when the
validation loss stops improving. The attention of one test review is drawn in plots/attention.png.
keras-io's "Text classification with Transformer" (one block, 200 tokens, 2 epochs) reaches 87.45%.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import TrainConfig, option
from dlkit.plugins.text_classifier import CLASS_NAMES, TextClassifier


@dataclass
class TransformerConfig(TrainConfig):
    epochs: int = option(2, "Passes over the training set (at most: see --patience).", min=1)
    batch_size: int = option(64, "Examples per gradient step.", min=1)
    val_fraction: float = option(0.1, "Fraction of the training reviews held out for validation and early "
                                      "stopping.", min=0.0, max=0.5)
    patience: int = option(1, "Stop after N epochs without a lower validation loss and keep the best epoch's "
                              "weights (0 = off).", min=0)
    sequence_length: int = option(400, "Tokens per review (its last ones; shorter reviews are front-padded).",
                                  min=1)
    vocab_size: int = option(20000, "Vocabulary size, padding and out-of-vocabulary tokens included.", min=3)
    width: int = option(64, "Model width d_model: the size of the embeddings and of every block's output.", min=1)
    heads: int = option(4, "Attention heads per block (must divide --width).", min=1)
    ff: int = option(128, "Inner size of each block's feed-forward network.", min=1)
    depth: int = option(1, "Encoder blocks.", min=1, max=12)
    dropout: float = option(0.2, "Dropout of the embeddings, each sub-layer's output and the pooled vector.",
                            min=0.0, max=0.9)
    learning_rate: float = option(1e-3, "Peak AdamW learning rate.", min=0.0)
    warmup: float = option(0.1, "Fraction of the steps spent rising linearly to --learning-rate.", min=0.0, max=1.0)
    weight_decay: float = option(0.01, "AdamW weight decay of the matrices and embeddings (not biases and norms).",
                                 min=0.0)

    def __post_init__(self):
        if self.width % self.heads:
            from dlkit.errors import DlkitError

            raise DlkitError(f"--heads {self.heads} must divide --width {self.width}")


class Transformer(TextClassifier):
    name = "transformer"
    summary = "Transformer encoder (multi-head self-attention) classifying IMDB reviews; attention plot"
    config = TransformerConfig
    datasets = ("imdb",)
    test_config = {"vocab_size": 200, "sequence_length": 16, "width": 8, "heads": 2, "ff": 8}
    api_version = 1

    # -- model ---------------------------------------------------------------------------------------
    def build(self, cfg: TransformerConfig, data):
        import math

        import keras

        from dlkit.plugins.transformer_model import transformer_classifier

        self.keep_vocabulary(data)  # the vocabulary travels with the run: predict/evaluate on any backend
        model = transformer_classifier(len(data.info["vocabulary"]), cfg.sequence_length, len(CLASS_NAMES),
                                       depth=cfg.depth, heads=cfg.heads, width=cfg.width, ff=cfg.ff,
                                       dropout=cfg.dropout)
        steps = max(1, cfg.epochs * math.ceil(len(data.y_train) / cfg.batch_size))
        warmup = int(cfg.warmup * steps)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else cfg.learning_rate, max(1, steps - warmup),
            warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # decay the matrices only
        model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    # -- training and prediction in batches as wide as their longest review ------------------------------
    def train(self, model, data, cfg: TransformerConfig, run):
        from dlkit.plugins.transformer_model import LengthBatches

        batches = LengthBatches(data.x_train, data.y_train, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                epoch=run.start)
        validation = None if data.x_val is None else LengthBatches(data.x_val, data.y_val, 256)
        return run.fit(model, batches, validation_data=validation)

    def predictor(self, model):
        from dlkit.plugins.transformer_model import ByLength

        return ByLength(model)

    def custom_objects(self):
        """Importing the model module registers its layers, so model.keras reloads in safe mode."""
        from dlkit.plugins.transformer_model import custom_objects

        return custom_objects()

    # -- the attention plot ----------------------------------------------------------------------------
    def extra_plots(self, model, data, cfg: TransformerConfig, run) -> None:
        plot_attention(model, data, run.plots_dir / "attention.png", f"{self.name} ({cfg.depth} block(s), "
                       f"{cfg.heads} heads)")


def pick_review(tokens, shortest: int = 12, longest: int = 48) -> int:
    """The first test review with between ``shortest`` and ``longest`` real tokens (a readable plot),
    else the shortest one."""
    import numpy as np

    lengths = (np.asarray(tokens) != 0).sum(axis=1)
    fits = np.flatnonzero((lengths >= shortest) & (lengths <= longest))
    return int(fits[0]) if len(fits) else int(np.argmin(np.where(lengths > 0, lengths, 10 ** 9)))


def plot_attention(model, data, path, title: str) -> None:
    """The last block's attention over the tokens of one test review, averaged over the heads: the
    query × key matrix, and how much attention each token receives on average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from dlkit.plugins.transformer_model import attention_weights

    i = pick_review(data.x_test)
    row = data.x_test[i:i + 1]
    real = np.flatnonzero(row[0] != 0)
    vocabulary = data.info["vocabulary"]
    words = [vocabulary[t] for t in row[0, real]]
    weights = attention_weights(model, row)[-1][0].mean(axis=0)                         # (T, T), heads averaged
    weights = weights[np.ix_(real, real)]                                               # real tokens only
    probs = np.asarray(model.predict(row[:, -len(real):], verbose=0))[0]
    received = weights.mean(axis=0)

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.28 * len(words)), 12),
                                      gridspec_kw={"height_ratios": [4, 1]})
    image = top.imshow(weights, cmap="viridis")
    top.set_xticks(range(len(words)), words, rotation=90, fontsize=8)
    top.set_yticks(range(len(words)), words, fontsize=8)
    top.set_xlabel("key (attended to)")
    top.set_ylabel("query")
    fig.colorbar(image, ax=top, fraction=0.03)
    top.set_title(f"{title}: test review {i}, true {CLASS_NAMES[int(data.y_test[i])]}, predicted "
                  f"{CLASS_NAMES[int(probs.argmax())]} ({probs.max():.2f})\nlast block's attention, heads averaged")
    bottom.bar(range(len(words)), received, color="tab:blue")
    bottom.set_xticks(range(len(words)), words, rotation=90, fontsize=8)
    bottom.set_xlim(-0.5, len(words) - 0.5)
    bottom.set_ylabel("mean attention received")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
