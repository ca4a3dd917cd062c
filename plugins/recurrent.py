"""What the recurrent networks (rnn, lstm, gru) share: options, data, model, head, metrics, predict.

Each plugin (plugins/rnn.py, lstm.py, gru.py) only chooses its cell; everything else lives here once,
and the IMDB text pipeline (data, vocabulary artifact, metrics, ``dlkit predict``) lives once for
every text classifier in plugins/text_classifier.py, which ``Recurrent`` extends with a time series.

Data:
- ``imdb`` (default): the Large Movie Review Dataset (Maas et al., ACL 2011), 25,000 raw reviews to
  train on and 25,000 to test on, positive or negative, read and tokenized by ``TextClassifier``
  (plugins/text_classifier.py); the vocabulary is saved with the run as ``artifacts/vocabulary.json``.
- ``co2``: the Mauna Loa atmospheric CO₂ series, weekly, March 1958 to December 2001 (2,284 weeks;
  Keeling et al., Scripps), as shipped inside statsmodels (``statsmodels.datasets.co2``). Chosen
  because it is a real multi-year measurement that is available offline through a package, with a
  trend and a yearly cycle, so a forecaster has something to learn beyond "tomorrow as today".
  Split by time: the first 70% of the weeks train, the next 15% validate, the last 15% test. From a
  window of past weeks the network forecasts the next H weeks; it sees the window relative to its
  last value and predicts the change from it, so the upward trend never takes it outside the range
  it was trained on. Its test MAE and RMSE (ppm) stand next to two baselines on the same targets:
  persistence (the last value, H weeks on) and seasonal-naive (the value 52 weeks before each target).

Model (text): token ids (B, L) → Embedding (B, L, E) → dropout → ``--layers`` recurrent layers
(optionally bidirectional) → max over time of the last layer's outputs (``--pool max``, default) or
its final state (``--pool last``) → dropout → softmax over the two classes. Pooling over time gives
every step a short gradient path to the loss, which helps every cell and helps the plain RNN most.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlkit import data as datasets
from dlkit.api import Dataset, TrainConfig, option
from dlkit.errors import DlkitError
from dlkit.plugins.text_classifier import CLASS_NAMES, TextClassifier

SEASON = 52  # weeks in the CO₂ series' yearly cycle

datasets.register(datasets.DataSource(
    "co2", (), "Mauna Loa CO₂, weekly 1958–2001 (2,284 weeks; ships with statsmodels, no download)",
    "series"))


@dataclass
class RecurrentConfig(TrainConfig):
    epochs: int = option(4, "Passes over the training set.", min=1)
    batch_size: int = option(64, "Examples per gradient step.", min=1)
    cell: str = option("keras", "Which implementation of the cell.", choices=("keras",))
    units: int = option(64, "Units of each recurrent layer (per direction).", min=1)
    layers: int = option(1, "Stacked recurrent layers.", min=1, max=8)
    bidirectional: bool = option(False, "Read the sequence both ways (doubles the units).")
    dropout: float = option(0.3, "Dropout after the embedding and before the output.", min=0.0, max=0.9)
    pool: str = option("max", "Text head: max over time of the outputs, or the last state.",
                       choices=("max", "last"))
    sequence_length: int = option(400, "Tokens per review (its last ones; shorter reviews are front-padded).",
                                  min=1)
    vocab_size: int = option(20000, "Vocabulary size, padding and out-of-vocabulary tokens included.",
                             min=3)
    embedding: int = option(128, "Size of the token embeddings.", min=1)
    learning_rate: float = option(2e-3, "Peak Adam learning rate (then decays to 0 on a cosine).", min=0.0)
    window: int = option(104, "Time series: weeks of history the forecast reads.", min=1)
    horizon: int = option(13, "Time series: weeks forecast ahead (H).", min=1)


class Recurrent(TextClassifier):
    """The shared plugin; subclasses set ``name``, ``summary``, ``config`` and ``layer()``."""

    datasets = ("imdb", "co2")
    test_config = {"units": 4, "embedding": 8, "vocab_size": 200, "sequence_length": 16}

    # -- the cell: what a subclass chooses -------------------------------------------------------
    def layer(self, cfg: RecurrentConfig, return_sequences: bool):
        """One recurrent layer (a Keras layer) of ``cfg.units`` units."""
        raise NotImplementedError

    # -- data ---------------------------------------------------------------------------------------
    def load_data(self, cfg: RecurrentConfig) -> Dataset:
        if cfg.data == "co2":
            self.headline_metric = "mae"  # a forecast's headline: test MAE in ppm, next to the baselines'
            return co2_data(cfg)
        return self._imdb(cfg)

    # -- model ------------------------------------------------------------------------------------
    def build(self, cfg: RecurrentConfig, data: Dataset):
        import keras
        from keras import layers

        from dlkit.optimizers import adam_cosine

        if data.info.get("kind") == "series":
            inputs = keras.Input(shape=data.input_shape, name="window")                 # (B, W, 1)
            x = self._stack(cfg, inputs, last_sequences=False)                           # (B, units)
            outputs = layers.Dense(cfg.horizon, name="forecast")(x)                     # (B, H)
            loss, metrics = "mse", ["mae"]
        else:
            self.keep_vocabulary(data)  # the vocabulary travels with the run: predict/evaluate on any backend
            inputs = keras.Input(shape=data.input_shape, dtype="int32", name="tokens")  # (B, L)
            x = layers.Embedding(len(data.info["vocabulary"]), cfg.embedding)(inputs)  # (B, L, E)
            x = layers.Dropout(cfg.dropout)(x)
            x = self._stack(cfg, x, last_sequences=cfg.pool == "max")                   # (B, L, U) or (B, U)
            if cfg.pool == "max":
                x = layers.GlobalMaxPooling1D()(x)                                       # (B, U)
            x = layers.Dropout(cfg.dropout)(x)
            outputs = layers.Dense(len(CLASS_NAMES), activation="softmax")(x)           # (B, 2)
            loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
        model = keras.Model(inputs, outputs, name=self.name)
        model.compile(optimizer=adam_cosine(cfg.learning_rate, cfg.epochs, len(data.y_train), cfg.batch_size),
                      loss=loss, metrics=metrics)
        return model

    def _stack(self, cfg: RecurrentConfig, x, last_sequences: bool):
        from keras import layers

        for depth in range(cfg.layers):
            sequences = last_sequences or depth < cfg.layers - 1
            layer = self.layer(cfg, return_sequences=sequences)
            x = layers.Bidirectional(layer)(x) if cfg.bidirectional else layer(x)
        return x

    def custom_objects(self) -> dict[str, Any]:
        return {}

    # -- metrics, plots, predict ------------------------------------------------------------------
    def evaluate(self, model, data: Dataset, cfg: RecurrentConfig) -> dict[str, Any]:
        if data.info.get("kind") == "series":
            return forecast_metrics(model, data)
        return super().evaluate(model, data, cfg)

    def extra_plots(self, model, data: Dataset, cfg: RecurrentConfig, run) -> None:
        if data.info.get("kind") == "series":
            plot_forecast(model, data, cfg, run.plots_dir / "forecast.png", f"{self.name} on co2")

    def predict(self, model, cfg: RecurrentConfig, inputs: list[str], options) -> list[dict[str, Any]]:
        if cfg.data != "imdb":
            raise DlkitError(f"{self.run.path} is a {self.name} forecaster of the '{cfg.data}' series, not a text "
                             f"classifier: predict takes texts for runs trained on imdb")
        return super().predict(model, cfg, inputs, options)


# -- the time series ---------------------------------------------------------------------------------
def co2_series():
    """The weekly Mauna Loa CO₂ values (ppm) as float64, the 59 missing weeks filled linearly; and the dates."""
    try:
        from statsmodels.datasets import co2
    except ImportError:
        raise DlkitError("--data co2 reads the series shipped with statsmodels, which is not installed: "
                         "pip install 'dlkit[timeseries]' (or pip install statsmodels)") from None
    frame = co2.load_pandas().data["co2"].interpolate(limit_direction="both")
    return frame.to_numpy(dtype="float64"), frame.index.to_numpy()


def co2_data(cfg: RecurrentConfig, series=None, dates=None) -> Dataset:
    """Windows → next-``horizon`` targets, split by time 70/15/15; targets of a split lie inside it.

    Inputs are the window minus its last value, targets the future minus that value, both divided
    by the training span's standard deviation of weekly changes (``info["scale"]``).
    """
    import numpy as np

    if series is None:
        series, dates = co2_series()
    n, w, h = len(series), cfg.window, cfg.horizon
    bounds = (0, int(n * 0.70), int(n * 0.85), n)
    shortest = min(bounds[i + 1] - bounds[i] for i in range(3))
    if w + h > bounds[1] or h > shortest:
        raise DlkitError(f"the co2 series has {n} weeks (train {bounds[1]}, validation {bounds[2] - bounds[1]}, test "
                         f"{n - bounds[2]}): too short for --window {w} and --horizon {h}; the window and horizon "
                         f"must fit in the training span and the horizon in each split")
    scale = float(np.std(np.diff(series[:bounds[1]])))

    def windows(lo: int, hi: int):
        # forecast origins t: the window is series[t-w+1 .. t], the targets series[t+1 .. t+h], all in [lo, hi)
        origins = np.arange(max(lo - 1, w - 1), hi - h)
        x = np.stack([series[t - w + 1:t + 1] for t in origins])
        y = np.stack([series[t + 1:t + 1 + h] for t in origins])
        last = x[:, -1:]
        return ((x - last) / scale)[..., None].astype("float32"), ((y - last) / scale).astype("float32"), origins

    (x_train, y_train, _), (x_val, y_val, _), (x_test, y_test, test_origins) = (
        windows(bounds[i], bounds[i + 1]) for i in range(3))
    return Dataset("co2", x_train, y_train, x_test, y_test, x_val, y_val, input_shape=(w, 1), fixed_splits=True,
                   info={"kind": "series", "series": series, "dates": dates, "scale": scale,
                         "test_origins": test_origins, "bounds": bounds})


def _forecasts(model, data: Dataset):
    """Targets, the model's forecasts and the two baselines' for every test origin, in ppm: (N, H) each."""
    import numpy as np

    series, scale, origins = data.info["series"], data.info["scale"], data.info["test_origins"]
    h = data.y_test.shape[1]
    last = series[origins][:, None]
    target = np.stack([series[t + 1:t + 1 + h] for t in origins])
    model_fc = last + scale * np.asarray(model.predict(data.x_test, verbose=0, batch_size=256), dtype="float64")
    persistence = np.repeat(last, h, axis=1)
    seasonal = np.stack([series[t + 1 - SEASON:t + 1 - SEASON + h] for t in origins])
    return target, model_fc, persistence, seasonal


def forecast_metrics(model, data: Dataset) -> dict[str, Any]:
    import numpy as np

    target, model_fc, persistence, seasonal = _forecasts(model, data)

    def scores(fc):
        err = fc - target
        return float(np.abs(err).mean()), float(np.sqrt((err ** 2).mean()))

    (mae, rmse), (p_mae, p_rmse), (s_mae, s_rmse) = scores(model_fc), scores(persistence), scores(seasonal)
    return {"mae": mae, "rmse": rmse, "persistence_mae": p_mae, "persistence_rmse": p_rmse,
            "seasonal_naive_mae": s_mae, "seasonal_naive_rmse": s_rmse,
            "mae_vs_seasonal_naive": 1.0 - mae / s_mae, "horizon": int(target.shape[1]),
            "test_forecasts": int(target.shape[0]), "unit": "ppm"}


def plot_forecast(model, data: Dataset, cfg, path, title: str) -> None:
    """The test span, the H-week-ahead forecast of every origin (its last step) and the baselines'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, dates, origins = data.info["series"], data.info["dates"], data.info["test_origins"]
    target, model_fc, persistence, seasonal = _forecasts(model, data)
    h = target.shape[1]
    lo = data.info["bounds"][2]
    when = dates[origins + h]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(dates[lo:], series[lo:], color="black", lw=1.2, label="measured (test span)")
    ax.plot(when, model_fc[:, -1], color="tab:blue", lw=1.2, label=f"{title.split()[0]}, {h} weeks ahead")
    ax.plot(when, seasonal[:, -1], color="tab:orange", lw=1, ls="--", label="seasonal-naive (52 weeks before)")
    ax.plot(when, persistence[:, -1], color="tab:gray", lw=1, ls=":", label=f"persistence ({h} weeks before)")
    mae = lambda fc: abs(fc - target).mean()  # noqa: E731
    ax.set_title(f"{title}: test MAE {mae(model_fc):.3f} ppm (seasonal-naive {mae(seasonal):.3f}, "
                 f"persistence {mae(persistence):.3f})")
    ax.set_ylabel("CO₂ (ppm)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
