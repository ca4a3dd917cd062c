"""Text classification data from a folder of labelled files, tokenized with Keras' TextVectorization.

For every text model (recurrent networks, Transformers): the raw files are read here, the
vocabulary is adapted on the training texts only, and the model receives integer token arrays. The
tokenization runs outside the model (TextVectorization is TensorFlow-backed), so the model itself
runs on TensorFlow, JAX and PyTorch, and exports to TFLite with built-in ops only. The vocabulary
is a plain list of strings that a plugin saves with its run (``run.save_artifact``): a model trained
on one backend then encodes new text identically on another.

Sequences keep their *last* ``length`` tokens and are padded at the front with 0 (Keras'
``pad_sequences`` defaults): a review's verdict tends to come at its end, and a recurrent network
without masks reads the padding first, so its final state is the text's.

Everything heavy is imported inside the functions: importing this module costs nothing.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dlkit.errors import DlkitError

#: The order a folder's texts are shuffled in: fixed, so ``--train-samples``/``--test-samples``
#: take the same examples in every run and on every backend, whatever the seed.
ORDER_SEED = 1337
PAD, OOV = "", "[UNK]"  # TextVectorization's reserved ids 0 and 1


def clean(text: str) -> str:
    """What every text goes through before tokenization: HTML line breaks become spaces."""
    return text.replace("<br />", " ").replace("<br/>", " ")


def read_folder(folder: Path, class_names: tuple[str, ...]):
    """Texts (a NumPy object array, cleaned) and int64 labels of ``folder/<class>/*.txt``, in a fixed shuffled order."""
    import numpy as np

    texts, labels = [], []
    for label, name in enumerate(class_names):
        files = sorted((folder / name).glob("*.txt"))
        if not files:
            raise DlkitError(f"{folder / name} holds no .txt files; the dataset folder is incomplete "
                             f"(delete it and add the archive again with 'dlkit data add')")
        for path in files:
            try:
                texts.append(clean(path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise DlkitError(f"{path} is unreadable ({exc}); the dataset folder is damaged") from None
            labels.append(label)
    order = np.random.default_rng(ORDER_SEED).permutation(len(texts))
    return np.array(texts, dtype=object)[order], np.array(labels, dtype="int64")[order]


def adapt_vocabulary(texts, size: int) -> list[str]:
    """The ``size`` most frequent tokens of ``texts`` (ids 0 and 1 are padding and out-of-vocabulary)."""
    import keras

    vectorizer = keras.layers.TextVectorization(max_tokens=size, output_mode="int")
    vectorizer.adapt(list(texts), batch_size=1024)
    return [str(token) for token in vectorizer.get_vocabulary()]


def check_vocabulary(vocabulary: Any, where: str) -> list[str]:
    """A vocabulary read back from a file: a list of strings starting with the padding and OOV tokens."""
    if (not isinstance(vocabulary, list) or len(vocabulary) < 3 or vocabulary[:2] != [PAD, OOV]
            or not all(isinstance(t, str) for t in vocabulary)):
        raise DlkitError(f"{where} is not a vocabulary (a JSON list of tokens starting with \"\" and \"[UNK]\")")
    return vocabulary


def encode(texts, vocabulary: list[str], length: int, batch: int = 1024):
    """Token ids of ``texts`` (already cleaned) as an int32 array (N, length): the last ``length``
    tokens of each text, front-padded with 0."""
    import keras
    import numpy as np

    vectorizer = keras.layers.TextVectorization(vocabulary=vocabulary, output_mode="int")
    texts = list(texts)
    out = np.zeros((len(texts), length), dtype="int32")
    for start in range(0, len(texts), batch):
        ids = np.asarray(keras.ops.convert_to_numpy(vectorizer(texts[start:start + batch])))
        for i, row in enumerate(ids, start):
            row = row[row != 0][-length:]  # the batch is padded to its longest text: drop that padding
            out[i, length - len(row):] = row
    return out
