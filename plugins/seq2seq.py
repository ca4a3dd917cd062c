"""Encoder–decoder with attention (GRU or LSTM) normalizing human-written dates to ISO 8601.

"Tuesday, 3rd of March 1987", "3/3/87", "March 3, 1987" → "1987-03-03", character by character.

- ``--attention bahdanau``: Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly Learning to
  Align and Translate" (ICLR 2015). Additive score from the previous decoder state:
  e_tj = v^T tanh(W s_{t-1} + U h_j), α_tj = softmax_j(e_tj), c_t = Σ_j α_tj h_j, and c_t enters the step.
- ``--attention luong``: Luong, Pham & Manning, "Effective Approaches to Attention-based Neural Machine
  Translation" (EMNLP 2015). Global attention, "general" score from the new state: e_tj = s_t^T W_a h_j,
  h̃_t = tanh(W_c [c_t; s_t]) predicts y_t.
- ``--attention none``: the fixed-vector encoder–decoder (Sutskever, Vinyals & Le, NeurIPS 2014): the
  input reaches the decoder only through its initial state. Kept as the baseline that shows why
  attention exists; its accuracy by input length is in metrics.json.

The encoder is a bidirectional GRU/LSTM over the characters (padding masked); the decoder runs 10
steps, one per character of YYYY-MM-DD, with teacher forcing in training and greedy decoding at test
time (the encoder once, then the 10 steps in one compiled call). The layers and the equations in full
are in dlkit/plugins/seq2seq_model.py.

Data, ``--data dates`` (generated offline, no download; dlkit/plugins/dates.py): every day from 1950 to
2049 written in 28 formats (numeric, words, weekdays, ordinals; Title, lower or UPPER case), 6 to 36
characters. The days are split 80/10/10 with a fixed seed, so no test date appears in training in any
format. Slashes are month/day/year, dots day.month.year, two-digit years 50–99 → 19xx, 00–49 → 20xx.

Headline: exact match (all 10 characters right) on the held-out test dates, with the accuracy by input
length and by format. plots/attention.png: attention heatmaps of a few test dates.
``dlkit predict RUN "the 3rd of march 1987"`` prints the ISO date (``--plot FILE``: its heatmap).
Characters the model never saw are dropped after stripping accents (named in the result as
``ignored``); a format it never saw is no error: it gets the model's best guess, flagged by
``valid`` (whether the output is a real calendar date) and ``confidence``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlkit import data as datasets
from dlkit.api import Algorithm, BaseConfig, Dataset, option
from dlkit.errors import DlkitError
from dlkit.plugins import dates

OUTPUT_CHARS = "0123456789-"   # every ISO date is 10 of these; decoder id len(OUTPUT_CHARS) is <start>
LENGTH = 10                    # len("YYYY-MM-DD")
VOCAB = "vocab.json"
#: input-length buckets of the accuracy breakdown (characters, inclusive)
BUCKETS = ((1, 10), (11, 15), (16, 20), (21, 25), (26, 30), (31, 40))

datasets.register(datasets.DataSource(
    "dates", (), "Human-written dates (28 formats, 1950–2049) → ISO 8601, generated from Python's calendar "
                 "(no download)", "text"))


@dataclass
class Seq2SeqConfig(BaseConfig):
    data: str = option("", "Dataset to train on (default: the plugin's first).")
    attention: str = option("bahdanau", "Attention: bahdanau (additive), luong (general) or none (fixed vector).",
                            choices=("bahdanau", "luong", "none"))
    cell: str = option("gru", "Recurrent cell of the encoder and the decoder.", choices=("gru", "lstm"))
    units: int = option(128, "Units of the decoder and of each encoder direction.", min=1)
    embedding_dim: int = option(32, "Size of the character embeddings.", min=1)
    train_size: int = option(20000, "Training examples generated from the training days.", min=1)
    val_size: int = option(2000, "Validation examples, from days of their own.", min=1)
    test_size: int = option(5000, "Test examples, from days of their own (never trained on).", min=1)
    epochs: int = option(6, "Passes over the training set.", min=1)
    batch_size: int = option(64, "Examples per gradient step.", min=1)
    learning_rate: float = option(3e-3, "Peak Adam learning rate (then a cosine decay to 0).", min=0.0)


@dataclass
class Seq2SeqPredict:
    plot: str | None = option(None, "Write the attention heatmap of the inputs to this PNG file.")


class Seq2Seq(Algorithm):
    name = "seq2seq"
    summary = "GRU/LSTM encoder-decoder with Bahdanau or Luong attention: human dates → ISO 8601"
    config = Seq2SeqConfig
    datasets = ("dates",)
    task = "seq2seq"
    headline_metric = "exact_match"
    predict_config = Seq2SeqPredict
    test_config = {"train_size": 64, "val_size": 16, "test_size": 32, "units": 8, "embedding_dim": 4,
                   "epochs": 1, "batch_size": 16}
    api_version = 1

    # -- data ------------------------------------------------------------------------------------------
    def load_data(self, cfg: Seq2SeqConfig) -> Dataset:
        chars = self._vocab()["input_chars"]
        width = dates.longest_input()
        splits = {name: dates.examples(name, size) for name, size in
                  (("train", cfg.train_size), ("val", cfg.val_size), ("test", cfg.test_size))}
        arrays = {name: encode_pairs(examples, chars, width) for name, examples in splits.items()}
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = arrays["train"], arrays["val"], arrays["test"]
        test = splits["test"]
        return Dataset("dates", x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test,
                       y_test=y_test, fixed_splits=True,
                       info={"input_chars": chars, "width": width, "test_texts": [e.text for e in test],
                             "test_iso": [e.iso for e in test], "test_formats": [e.format for e in test]})

    def _vocab(self) -> dict[str, Any]:
        """The run's vocabulary when it has one (evaluate, predict, resume), else the generator's alphabet."""
        from dlkit.runs import ARTIFACTS

        if self.run is not None and (self.run.path / ARTIFACTS / VOCAB).is_file():
            return self.run.load_artifact(VOCAB)
        return {"input_chars": dates.alphabet(), "output_chars": OUTPUT_CHARS, "length": LENGTH}

    # -- model -------------------------------------------------------------------------------------------
    def build(self, cfg: Seq2SeqConfig, data: Dataset):
        import keras

        from dlkit.plugins.seq2seq_model import seq2seq

        model = seq2seq(len(data.info["input_chars"]) + 1, len(OUTPUT_CHARS), LENGTH, units=cfg.units,
                        embedding_dim=cfg.embedding_dim, cell=cfg.cell, attention=cfg.attention)
        steps = max(1, cfg.epochs * -(-len(data.y_train) // cfg.batch_size))
        # a cosine to 0 lets the last epochs polish the exact match; clipping keeps the recurrent steps stable
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps)
        model.compile(keras.optimizers.Adam(schedule, global_clipnorm=1.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return model

    def custom_objects(self) -> dict[str, Any]:
        """Importing the model module registers its layers, so model.keras reloads in safe mode."""
        from dlkit.plugins import seq2seq_model as m

        return {f"dlkit>{cls.__name__}": cls for cls in
                (m.AdditiveAttention, m.GeneralAttention, m.Encoder, m.AttentionDecoder)}

    def train(self, model, data: Dataset, cfg: Seq2SeqConfig, run):
        run.save_artifact(VOCAB, {"input_chars": data.info["input_chars"], "output_chars": OUTPUT_CHARS,
                                  "length": LENGTH})
        return run.fit(model, data.x_train, data.y_train, validation_data=(data.x_val, data.y_val))

    # -- metrics and plots -------------------------------------------------------------------------------
    def evaluate(self, model, data: Dataset, cfg: Seq2SeqConfig) -> dict[str, Any]:
        import numpy as np

        from dlkit.plugins.seq2seq_model import greedy_decode

        encoder, _ = data.x_test
        ids, _, _ = greedy_decode(model, encoder)
        outputs = [decode(row) for row in ids]
        truth, texts, formats = data.info["test_iso"], data.info["test_texts"], data.info["test_formats"]
        right = np.array([o == t for o, t in zip(outputs, truth)])
        lengths = np.array([len(t) for t in texts])
        by_length = {}
        for lo, hi in BUCKETS:
            inside = (lengths >= lo) & (lengths <= hi)
            if inside.any():
                by_length[f"{lo}-{hi}"] = {"exact_match": float(right[inside].mean()), "count": int(inside.sum())}
        by_format = {name: float(right[[f == name for f in formats]].mean()) for name in sorted(set(formats))}
        chars = np.array([[a == b for a, b in zip(o, t)] for o, t in zip(outputs, truth)])
        mistakes = [{"input": x, "output": o, "expected": t} for x, o, t, ok in zip(texts, outputs, truth, right)
                    if not ok]
        return {"exact_match": float(right.mean()), "char_accuracy": float(chars.mean()),
                "valid_dates": float(np.mean([dates.parse_iso(o) is not None for o in outputs])),
                "exact_match_by_length": by_length, "exact_match_by_format": by_format,
                "mistakes": mistakes[:20], "test_samples": len(truth)}

    def extra_plots(self, model, data: Dataset, cfg: Seq2SeqConfig, run) -> None:
        if cfg.attention == "none":
            return  # no attention weights: the fixed-vector baseline has nothing to draw
        import numpy as np

        from dlkit.plugins.seq2seq_model import greedy_decode

        texts = data.info["test_texts"]
        # a short, two medium and the longest test input, so the picture shows alignment over lengths
        order = np.argsort([len(t) for t in texts], kind="stable")
        picks = [int(order[int(q * (len(order) - 1))]) for q in (0.1, 0.5, 0.8, 1.0)]
        encoder = data.x_test[0][picks]
        ids, _, attention = greedy_decode(model, encoder)
        plot_attention([texts[i] for i in picks], [decode(r) for r in ids], attention,
                       run.plots_dir / "attention.png", f"{cfg.attention} attention, {cfg.cell}: test dates")

    # -- predict -----------------------------------------------------------------------------------------
    def predict(self, model, cfg: Seq2SeqConfig, inputs: list[str], options: Seq2SeqPredict) -> list[dict]:
        import numpy as np

        from dlkit.plugins.seq2seq_model import greedy_decode

        if options is not None and options.plot and cfg.attention == "none":
            raise DlkitError(f"{self.run.path} was trained with --attention none: it has no attention to plot")
        chars = self._vocab()["input_chars"]
        cleaned = []
        for i, text in enumerate(inputs, 1):
            kept, ignored = clean(text, chars)
            if not kept:
                raise DlkitError(f"input {i} ({text!r}) has no character the model knows (it reads "
                                 f"{chars.strip()!r})")
            cleaned.append((kept, ignored))
        width = max(dates.longest_input(), *(len(k) for k, _ in cleaned))
        encoder = np.stack([encode_text(k, chars, width) for k, _ in cleaned])
        ids, probabilities, attention = greedy_decode(model, encoder)
        results = []
        for (kept, ignored), row, p in zip(cleaned, ids, probabilities):
            output = decode(row)
            result = {"output": output, "valid": dates.parse_iso(output) is not None,
                      "confidence": float(np.prod(p.astype("float64")))}
            if ignored:
                result["ignored"] = ignored
            results.append(result)
        if options is not None and options.plot:
            plot_attention([k for k, _ in cleaned], [r["output"] for r in results], attention, options.plot,
                           f"{cfg.attention} attention ({self.run.path.name})")
        return results


# -- text ↔ ids ------------------------------------------------------------------------------------------
def clean(text: str, chars: str) -> tuple[str, str]:
    """``text`` in the model's alphabet: accents stripped (NFKD), every other character outside ``chars``
    dropped, then runs of white space made one space. Returns the text kept and the characters dropped."""
    import unicodedata

    stripped = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    kept = " ".join("".join(c for c in stripped if c in chars or c.isspace()).split())
    ignored = "".join(dict.fromkeys(c for c in stripped if c not in chars and not c.isspace()))
    return kept, ignored


def encode_text(text: str, chars: str, width: int):
    """Character ids (1 … len(chars)) right-padded with 0 to ``width``."""
    import numpy as np

    index = {c: i + 1 for i, c in enumerate(chars)}
    row = np.zeros(width, "int32")
    row[:len(text)] = [index[c] for c in text]
    return row


def encode_pairs(examples: list[dates.Example], chars: str, width: int):
    """((encoder ids (N, width), decoder ids (N, 10)), target ids (N, 10)): teacher forcing's inputs and targets.

    The decoder reads <start> and the first 9 characters of the answer, and is trained to predict all 10.
    """
    import numpy as np

    encoder = np.stack([encode_text(e.text, chars, width) for e in examples]) if examples else \
        np.zeros((0, width), "int32")
    target = np.array([[OUTPUT_CHARS.index(c) for c in e.iso] for e in examples], "int32").reshape(-1, LENGTH)
    decoder = np.concatenate([np.full((len(target), 1), len(OUTPUT_CHARS), "int32"), target[:, :-1]], axis=1)
    return (encoder, decoder), target


def decode(ids) -> str:
    return "".join(OUTPUT_CHARS[int(i)] for i in ids)


def plot_attention(inputs: list[str], outputs: list[str], attention, path, title: str) -> None:
    """One heatmap per example: output characters (rows) × input characters (columns), α from 0 to 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(inputs)
    cols = min(n, 2)
    rows = -(-n // cols)
    widest = max(len(t) for t in inputs)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * max(4.0, 0.28 * widest + 1.5), rows * 3.6), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, text, out, weights in zip(axes.flat, inputs, outputs, attention):
        image = ax.imshow(weights[:len(out), :len(text)], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(text)), labels=["␣" if c == " " else c for c in text], fontsize=8)
        ax.set_yticks(range(len(out)), labels=list(out), fontsize=8)
        ax.set_xlabel(f"input: {text}", fontsize=9)
        ax.set_ylabel(f"output: {out}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight α")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
