"""Character-level GPT on Tiny Shakespeare, and text generation with a key/value cache.

Radford, Narasimhan, Salimans & Sutskever, "Improving Language Understanding by Generative
Pre-Training" (OpenAI, 2018): a decoder-only Transformer (Vaswani et al., NeurIPS 2017) trained to
predict the next token. The setting is nanoGPT's ``shakespeare_char`` (Karpathy), scaled to a CPU:
the characters of Tiny Shakespeare (karpathy/char-rnn's ``input.txt``) are the vocabulary, the first
90% of the text trains and the last 10% validates, each step trains on random windows of
``--context`` characters, and the optimizer is AdamW (Loshchilov & Hutter, ICLR 2019) with a linear
warmup, a cosine decay to a tenth of the peak rate, and gradients clipped to norm 1.

The budget is ``--max-steps`` gradient steps; every ``--eval-interval`` steps the loop logs the
training loss and the validation loss (on ``--eval-windows`` windows spread evenly over the
validation text) and checkpoints, so ``dlkit train --resume`` continues exactly: each step's windows
depend on (seed, step) only. The headline is the validation loss in nats per character over the
whole validation text, in windows of ``--context`` characters.

``dlkit generate RUN --prompt "ROMEO:" --tokens 500`` streams characters as they are drawn, on any
backend, and reports tokens per second (``--no-cache`` recomputes the whole window for each
character instead, for comparison). The vocabulary is kept with the run (``artifacts/vocab.json``).
The model lives in dlkit/plugins/gpt_model.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from dlkit.api import Algorithm, BaseConfig, Dataset, GenerateConfig, option

VOCAB = "vocab.json"


@dataclass
class GPTConfig(BaseConfig):
    max_steps: int = option(2000, "Gradient steps to train for (the budget: about 13 minutes on 2 idle CPU cores).",
                            min=1)
    eval_interval: int = option(100, "Log, evaluate on the validation text and checkpoint every N steps.", min=1)
    eval_windows: int = option(64, "Validation windows in each periodic evaluation (the final one reads all).",
                               min=1)
    batch_size: int = option(32, "Windows per gradient step.", min=1)
    context: int = option(128, "Characters the model sees at once (positions it has embeddings for).", min=2)
    depth: int = option(4, "Transformer blocks.", min=1)
    heads: int = option(4, "Attention heads per block (must divide --width).", min=1)
    width: int = option(192, "Width of the residual stream (embedding size).", min=1)
    dropout: float = option(0.0, "Dropout after the embeddings, each attention and each MLP.", min=0.0, max=0.9)
    learning_rate: float = option(2e-3, "Peak AdamW learning rate (then a cosine down to a tenth of it).",
                                  min=0.0)
    warmup_steps: int = option(100, "Steps of linear warmup from 0 to --learning-rate.", min=0)
    weight_decay: float = option(0.1, "AdamW weight decay of the matrices and embeddings (not biases and norms).",
                                 min=0.0)
    beta2: float = option(0.99, "AdamW's second-moment decay (0.99: the small batches are noisy).",
                          min=0.0, max=0.9999)
    grad_clip: float = option(1.0, "Clip the gradients' global norm to this (0 = off).", min=0.0)

    def __post_init__(self):
        if self.width % self.heads:
            from dlkit.errors import DlkitError

            raise DlkitError(f"--heads {self.heads} must divide --width {self.width}")


@dataclass
class GPTGenerate(GenerateConfig):
    prompt: str = option("\n", "Text to continue (characters of the training text only).")
    tokens: int = option(500, "Characters to generate.", min=1)
    temperature: float = option(0.8, "Softmax temperature: below 1 sharper, above 1 flatter (must be > 0).")
    top_k: int | None = option(None, "Draw from the K likeliest characters only (1 = greedy; none = all).", min=1)
    cache: bool = option(True, "Reuse the keys and values of earlier characters (--no-cache: recompute the "
                               "window for every character, to compare speeds).")

    def __post_init__(self):
        from dlkit.errors import DlkitError

        if self.temperature <= 0:
            raise DlkitError(f"--temperature must be greater than 0, got {self.temperature:g} "
                             f"(for greedy decoding use --top-k 1)")
        if not self.prompt:
            raise DlkitError("--prompt is empty: give at least one character to continue (the default is a newline)")


class GPT(Algorithm):
    name = "gpt"
    summary = "Character-level GPT (decoder-only Transformer) on Tiny Shakespeare; dlkit generate streams text"
    config = GPTConfig
    datasets = ("tinyshakespeare",)
    task = "language-modeling"
    headline_metric = "val_loss"
    budget_unit = "step"
    generate_config = GPTGenerate
    test_config = {"max_steps": 4, "eval_interval": 2, "eval_windows": 2, "batch_size": 4, "context": 16,
                   "depth": 1, "heads": 2, "width": 16, "warmup_steps": 1}
    api_version = 1

    # -- data ----------------------------------------------------------------------------------------
    def load_data(self, cfg: GPTConfig) -> Dataset:
        import numpy as np

        from dlkit import data

        text = (data.fetch("tinyshakespeare") / "input.txt").read_text(encoding="utf-8")
        chars = sorted(set(text))
        index = {c: i for i, c in enumerate(chars)}
        ids = np.fromiter((index[c] for c in text), dtype="int32", count=len(text))
        n = len(ids) * 9 // 10  # nanoGPT's split: the first 90% trains, the last 10% validates
        # one stream of character ids per split; the loop cuts its windows from them
        return Dataset("tinyshakespeare", x_train=ids[:n], x_val=ids[n:], x_test=ids[n:],
                       info={"vocab": chars}, fixed_splits=True)

    # -- model ---------------------------------------------------------------------------------------
    def build(self, cfg: GPTConfig, data: Dataset):
        import keras

        from dlkit.plugins.gpt_model import gpt

        if cfg.context >= len(data.x_val):
            from dlkit.errors import DlkitError

            raise DlkitError(f"--context {cfg.context} is longer than the validation text ({len(data.x_val)} characters)")
        model = gpt(len(data.info["vocab"]), cfg.context, depth=cfg.depth, heads=cfg.heads, width=cfg.width,
                    dropout=cfg.dropout)
        decay_steps = max(1, cfg.max_steps - cfg.warmup_steps)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if cfg.warmup_steps else cfg.learning_rate, decay_steps, alpha=0.1,
            warmup_target=cfg.learning_rate if cfg.warmup_steps else None, warmup_steps=cfg.warmup_steps)
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay, beta_1=0.9, beta_2=cfg.beta2,
                                           global_clipnorm=cfg.grad_clip or None)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # as nanoGPT: 2-D weights only
        model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    def custom_objects(self):
        """Importing the model module registers its layers, so model.keras reloads in safe mode."""
        from dlkit.plugins.gpt_model import CausalSelfAttention, GPTBlock, GPTEmbedding

        return {"dlkit>GPTEmbedding": GPTEmbedding, "dlkit>CausalSelfAttention": CausalSelfAttention,
                "dlkit>GPTBlock": GPTBlock}

    # -- training ------------------------------------------------------------------------------------
    def train(self, model, data: Dataset, cfg: GPTConfig, run):
        import time

        import numpy as np

        run.save_artifact(VOCAB, {"chars": data.info["vocab"]})
        probe = windows_evenly(data.x_val, cfg.context, cfg.eval_windows)  # the same every evaluation
        losses: list[float] = []
        started = time.perf_counter()
        for step in range(run.start + 1, cfg.max_steps + 1):
            if run.stop_requested:  # Ctrl-C: return between two steps; the last checkpoint stays
                return None
            x, y = random_windows(data.x_train, cfg.context, cfg.batch_size, np.random.default_rng([cfg.seed, step]))
            losses.append(float(model.train_on_batch(x, y)))
            if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                val_loss = mean_loss(model, *probe, batch_size=cfg.batch_size)
                lr = float(model.optimizer.learning_rate)
                run.log(step, loss=float(np.mean(losses)), val_loss=val_loss, lr=lr)
                run.checkpoint(step, model)
                print(f"step {step}: loss {np.mean(losses):.4f}, val_loss {val_loss:.4f}, lr {lr:.2e}, "
                      f"{time.perf_counter() - started:.1f} s", flush=True)
                losses = []
        return None

    def evaluate(self, model, data: Dataset, cfg: GPTConfig) -> dict:
        import math

        windows = windows_evenly(data.x_test, cfg.context, (len(data.x_test) - 1) // cfg.context)
        loss = mean_loss(model, *windows, batch_size=max(cfg.batch_size, 64))
        return {"val_loss": loss, "val_bits_per_char": loss / math.log(2),
                "val_chars": int(windows[0].size), "context": cfg.context}

    # -- generation ----------------------------------------------------------------------------------
    def generate(self, model, cfg: GPTConfig, options: GPTGenerate, out, echo) -> dict:
        from dlkit.errors import DlkitError
        from dlkit.plugins.gpt_model import sample

        chars = self.run.load_artifact(VOCAB)["chars"]
        index = {c: i for i, c in enumerate(chars)}
        unknown = sorted(set(options.prompt) - set(index))
        if unknown:
            raise DlkitError(f"the prompt has characters the model never saw: {', '.join(map(repr, unknown))} "
                             f"(its vocabulary is the {len(chars)} characters of Tiny Shakespeare)")
        if options.top_k is not None and options.top_k > len(chars):
            raise DlkitError(f"--top-k {options.top_k} is larger than the vocabulary ({len(chars)} characters)")
        echo(options.prompt, nl=False)
        ids, timing = sample(model, [index[c] for c in options.prompt], options.tokens,
                             temperature=options.temperature, top_k=options.top_k, seed=options.seed,
                             cache=options.cache, on_token=lambda i: echo(chars[i], nl=False))
        echo("")
        text = options.prompt + "".join(chars[i] for i in ids)
        (out / "sample.txt").write_text(text, encoding="utf-8")
        return {"files": ["sample.txt"], "tokens": len(ids), "cache": options.cache, **timing}


# -- windows of text ---------------------------------------------------------------------------------
def random_windows(ids, context: int, batch: int, rng):
    """``batch`` windows at random offsets: inputs (B, T) and the same shifted by one character."""
    import numpy as np

    starts = rng.integers(0, len(ids) - context, size=batch)
    x = np.stack([ids[s:s + context] for s in starts])
    y = np.stack([ids[s + 1:s + 1 + context] for s in starts])
    return x, y


def windows_evenly(ids, context: int, count: int):
    """``count`` windows spread evenly over the text (non-overlapping when it holds that many)."""
    import numpy as np

    count = max(1, min(count, (len(ids) - 1) // context))
    stride = (len(ids) - 1 - context) // max(count - 1, 1)  # ≥ context when count is the most that fit
    starts = np.arange(count) * stride
    x = np.stack([ids[s:s + context] for s in starts])
    y = np.stack([ids[s + 1:s + 1 + context] for s in starts])
    return x, y


def mean_loss(model, x, y, batch_size: int) -> float:
    """Mean cross-entropy (nats per character) of ``model`` predicting ``y`` from ``x``, in NumPy."""
    import numpy as np

    total = 0.0
    for i in range(0, len(x), batch_size):
        logits = np.asarray(model.predict_on_batch(x[i:i + batch_size]), "float64")     # (b, T, V)
        logits -= logits.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(logits).sum(axis=-1))
        picked = np.take_along_axis(logits, y[i:i + batch_size, :, None], axis=-1)[..., 0]
        total += float((log_z - picked).sum())
    return total / y.size
