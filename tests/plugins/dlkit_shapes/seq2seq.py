"""shape_seq2seq: the shape of a sequence-to-sequence plugin (the encoder-decoder of Sutskever et al., 2014).

Inputs are a tuple (encoder tokens, decoder tokens) and the targets are the decoder tokens shifted by one
(teacher forcing), so ``--train-samples`` and ``--val-fraction`` slice both arrays of the tuple. The toy
task reverses a digit string ("1234" → "4321"), generated with a fixed seed. The vocabulary is kept with
the run as an artifact and read back by ``dlkit generate`` (random strings, decoded greedily) and
``dlkit predict`` (the strings given on the command line).
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, Dataset, GenerateConfig, TrainConfig, option

PAD, START, END = "<pad>", "<start>", "<end>"
VOCAB = (PAD, START, END, *"0123456789")
DATA_SEED = 1234  # the dataset is the same whatever --seed says


@dataclass
class Seq2SeqConfig(TrainConfig):
    epochs: int = option(20, "Passes over the training set.", min=1)
    batch_size: int = option(64, "Examples per gradient step.", min=1)
    examples: int = option(4000, "Digit strings generated for training (a tenth as many more for testing).",
                           min=10)
    max_digits: int = option(5, "Longest digit string.", min=1, max=20)
    units: int = option(64, "GRU units of the encoder and of the decoder.", min=1)
    learning_rate: float = option(3e-3, "Adam learning rate.", min=0.0)


@dataclass
class Seq2SeqGenerate(GenerateConfig):
    count: int = option(8, "Random digit strings to reverse.", min=1)
    max_length: int = option(0, "Most tokens decoded per string (0 = the run's longest string and <end>).",
                             min=0)


class Seq2Seq(Algorithm):
    name = "shape_seq2seq"
    summary = "Shape test: GRU encoder-decoder reversing digit strings (tuple inputs, artifacts, generate, predict)"
    config = Seq2SeqConfig
    datasets = ("reverse-digits",)
    task = "seq2seq"
    headline_metric = "exact_match"
    generate_config = Seq2SeqGenerate
    test_config = {"examples": 256, "epochs": 2, "units": 16, "max_digits": 4}
    api_version = 1

    def load_data(self, cfg: Seq2SeqConfig) -> Dataset:
        import numpy as np

        rng = np.random.default_rng(DATA_SEED)
        strings = random_strings(rng, cfg.examples + max(10, cfg.examples // 10), cfg.max_digits)
        encoder, decoder, target = encode_pairs(strings, cfg.max_digits)
        n = cfg.examples
        return Dataset(name="reverse-digits", x_train=(encoder[:n], decoder[:n]), y_train=target[:n],
                       x_test=(encoder[n:], decoder[n:]), y_test=target[n:],
                       info={"vocab": list(VOCAB), "max_digits": cfg.max_digits})

    def build(self, cfg: Seq2SeqConfig, data: Dataset):
        import keras
        from keras import layers

        size = len(data.info["vocab"])
        encoder_tokens = keras.Input((None,), dtype="int32", name="encoder_tokens")
        decoder_tokens = keras.Input((None,), dtype="int32", name="decoder_tokens")
        encoded = layers.Embedding(size, 16, mask_zero=True, name="encoder_embedding")(encoder_tokens)
        _, state = layers.GRU(cfg.units, return_state=True, name="encoder")(encoded)
        decoded = layers.Embedding(size, 16, mask_zero=True, name="decoder_embedding")(decoder_tokens)
        decoded = layers.GRU(cfg.units, return_sequences=True, name="decoder")(decoded, initial_state=state)
        probabilities = layers.Dense(size, activation="softmax", name="next_token")(decoded)
        model = keras.Model([encoder_tokens, decoder_tokens], probabilities, name="seq2seq")
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    def train(self, model, data: Dataset, cfg: Seq2SeqConfig, run):
        run.save_artifact("vocab.json", {"tokens": list(data.info["vocab"]), "max_digits": cfg.max_digits})
        validation = (data.x_val, data.y_val) if data.x_val is not None else None
        return run.fit(model, data.x_train, data.y_train, validation_data=validation)

    def evaluate(self, model, data: Dataset, cfg: Seq2SeqConfig) -> dict:
        import numpy as np

        encoder, _ = data.x_test
        sources = [decode_ids(row, VOCAB) for row in encoder]
        outputs = greedy_decode(model, sources, VOCAB, cfg.max_digits + 1)
        exact = np.mean([out == src[::-1] for src, out in zip(sources, outputs)])
        return {"exact_match": float(exact), "test_samples": len(sources)}

    def generate(self, model, cfg: Seq2SeqConfig, options: Seq2SeqGenerate, out, echo) -> dict:
        import numpy as np

        vocab = self.run.load_artifact("vocab.json")
        sources = random_strings(np.random.default_rng(options.seed), options.count, vocab["max_digits"])
        outputs = greedy_decode(model, sources, vocab["tokens"], options.max_length or vocab["max_digits"] + 1)
        lines = [f"{src} -> {out}" + ("" if out == src[::-1] else "  (wrong)") for src, out in zip(sources, outputs)]
        for line in lines:
            echo(line)
        (out / "samples.txt").write_text("\n".join(lines) + "\n")
        correct = sum(out == src[::-1] for src, out in zip(sources, outputs))
        return {"files": ["samples.txt"], "count": len(sources), "exact_match": correct / len(sources)}

    def predict(self, model, cfg: Seq2SeqConfig, inputs: list[str], options) -> list[dict]:
        vocab = self.run.load_artifact("vocab.json")
        for text in inputs:
            unknown = sorted(set(text) - set(vocab["tokens"][3:]))
            if unknown:
                raise ValueError(f"input {text!r} has {''.join(unknown)!r}; this model reverses digit strings")
            if len(text) > vocab["max_digits"]:
                raise ValueError(f"input {text!r} is longer than the {vocab['max_digits']} digits the model "
                                 f"was trained on")
        outputs = greedy_decode(model, inputs, vocab["tokens"], vocab["max_digits"] + 1)
        return [{"output": out, "correct": out == text[::-1]} for text, out in zip(inputs, outputs)]


# -- tokens ------------------------------------------------------------------------------------------
def random_strings(rng, count: int, max_digits: int) -> list[str]:
    lengths = rng.integers(1, max_digits + 1, size=count)
    return ["".join(map(str, rng.integers(0, 10, size=n))) for n in lengths]


def encode_pairs(strings: list[str], max_digits: int):
    """(encoder tokens, decoder tokens, targets) as int32 arrays, right-padded with <pad> = 0."""
    import numpy as np

    n = len(strings)
    encoder = np.zeros((n, max_digits), "int32")
    decoder = np.zeros((n, max_digits + 1), "int32")
    target = np.zeros((n, max_digits + 1), "int32")
    for i, text in enumerate(strings):
        ids = [VOCAB.index(c) for c in text]
        reverse = ids[::-1]
        encoder[i, :len(ids)] = ids
        decoder[i, :len(ids) + 1] = [VOCAB.index(START), *reverse]
        target[i, :len(ids) + 1] = [*reverse, VOCAB.index(END)]
    return encoder, decoder, target


def decode_ids(ids, vocab) -> str:
    """Tokens up to the first <pad>, <start> or <end>, as text."""
    text = []
    for i in ids:
        if vocab[int(i)] in (PAD, START, END):
            break
        text.append(vocab[int(i)])
    return "".join(text)


def greedy_decode(model, sources: list[str], vocab, max_length: int) -> list[str]:
    """Feed each output token back as the next decoder input until every row said <end> (or max_length)."""
    import keras
    import numpy as np

    index = {token: i for i, token in enumerate(vocab)}
    encoder = np.zeros((len(sources), max(map(len, sources))), "int32")
    for row, text in enumerate(sources):
        encoder[row, :len(text)] = [index[c] for c in text]
    decoder = np.zeros((len(sources), max_length + 1), "int32")
    decoder[:, 0] = index[START]
    finished = np.zeros(len(sources), bool)
    for t in range(max_length):
        probabilities = keras.ops.convert_to_numpy(model([encoder, decoder[:, :t + 1]], training=False))
        token = probabilities[:, t].argmax(axis=-1)
        decoder[:, t + 1] = np.where(finished, index[PAD], token)
        finished |= np.isin(token, [index[PAD], index[START], index[END]])
        if finished.all():
            break
    return [decode_ids(row[1:], vocab) for row in decoder]
