"""What every IMDB text classifier shares: data, vocabulary artifact, metrics and ``dlkit predict``.

The recurrent networks (plugins/recurrent.py: rnn, lstm, gru) and the Transformer encoder
(plugins/transformer.py) subclass ``TextClassifier`` and only build their network.

Data: the Large Movie Review Dataset (Maas et al., ACL 2011), 25,000 raw reviews to train on and
25,000 to test on, positive or negative. Tokenized with Keras' TextVectorization (dlkit.text): the
vocabulary is adapted on the training texts only (the validation split, when asked, comes out of
the training split first), saved with the run as ``artifacts/vocabulary.json``, and reused by
``dlkit evaluate``, ``dlkit predict`` and ``--resume`` on any backend. Tokenizing is redone on every
load rather than cached: 25,000 reviews take a few seconds, less than reading a cache would save,
and there is then no cache that could disagree with a run's vocabulary.

A config of a subclass has the fields ``sequence_length`` (tokens kept per review: its last ones,
front-padded with 0) and ``vocab_size``, besides TrainConfig's.
"""
from __future__ import annotations

from typing import Any

from dlkit import data as datasets
from dlkit.api import Algorithm, Dataset

CLASS_NAMES = ("negative", "positive")
VOCABULARY = "vocabulary.json"


class TextClassifier(Algorithm):
    """IMDB reviews → token ids → the subclass's network → negative/positive."""

    datasets = ("imdb",)

    # -- data ---------------------------------------------------------------------------------------
    def load_data(self, cfg) -> Dataset:
        return self._imdb(cfg)

    def _imdb(self, cfg) -> Dataset:
        from dlkit import text
        from dlkit.training import prepare

        root = datasets.fetch("imdb_reviews")
        x_train, y_train = text.read_folder(root / "train", ("neg", "pos"))
        x_test, y_test = text.read_folder(root / "test", ("neg", "pos"))
        # --train-samples, --test-samples and --val-fraction on the raw texts, so the vocabulary is
        # adapted on exactly the texts trained on (the core's prepare then finds nothing left to do)
        raw = prepare(Dataset("imdb", x_train, y_train, x_test, y_test), cfg)
        vocabulary = self._saved_vocabulary(cfg)
        if vocabulary is None:
            vocabulary = text.adapt_vocabulary(raw.x_train, cfg.vocab_size)

        def encode(texts):
            return None if texts is None else text.encode(texts, vocabulary, cfg.sequence_length)

        return Dataset("imdb", encode(raw.x_train), raw.y_train, encode(raw.x_test), raw.y_test,
                       encode(raw.x_val), raw.y_val, class_names=CLASS_NAMES,
                       input_shape=(cfg.sequence_length,), info={"vocabulary": vocabulary, "kind": "text"})

    def _saved_vocabulary(self, cfg) -> list[str] | None:
        """The run's vocabulary when it has one (evaluate, predict, resume), else None (a new run)."""
        from dlkit import text
        from dlkit.runs import ARTIFACTS

        if self.run is None:
            return None
        has_model = self.run.model_path.is_file()
        if not has_model and not (self.run.path / ARTIFACTS / VOCABULARY).is_file():
            return None
        return text.check_vocabulary(self.run.load_artifact(VOCABULARY), f"{self.run.path}/{ARTIFACTS}/{VOCABULARY}")

    def keep_vocabulary(self, data: Dataset) -> None:
        """Save the vocabulary with the run (``build`` calls it), so it travels with ``model.keras``."""
        if self.run is not None:
            self.run.save_artifact(VOCABULARY, data.info["vocabulary"])

    # -- metrics, predict -----------------------------------------------------------------------------
    def evaluate(self, model, data: Dataset, cfg) -> dict[str, Any]:
        from dlkit import metrics

        return metrics.classification(self.predictor(model), data, batch_size=256)

    def predictor(self, model):
        """What computes the class probabilities of token ids: ``predictor(model).predict(x, batch_size=,
        verbose=)``. The model itself; a subclass may batch differently (the transformer, by length)."""
        return model

    def encode_inputs(self, cfg, inputs: list[str]):
        """Token ids (N, sequence_length) of texts given on the command line, with the run's vocabulary."""
        from dlkit import text
        from dlkit.runs import ARTIFACTS

        vocabulary = text.check_vocabulary(self.run.load_artifact(VOCABULARY),
                                           f"{self.run.path}/{ARTIFACTS}/{VOCABULARY}")
        return text.encode([text.clean(t) for t in inputs], vocabulary, cfg.sequence_length)

    def predict(self, model, cfg, inputs: list[str], options) -> list[dict[str, Any]]:
        import numpy as np

        tokens = self.encode_inputs(cfg, inputs)
        probs = np.asarray(self.predictor(model).predict(tokens, batch_size=256, verbose=0), dtype="float64")
        return [{"label": CLASS_NAMES[int(p.argmax())], "probability": float(p.max()),
                 "known_tokens": int((row > 1).sum())} for p, row in zip(probs, tokens)]

