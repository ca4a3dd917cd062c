"""``dlkit export``: load a run's model on TensorFlow, prune, quantize, convert, verify, report.

Everything is written into a hidden staging folder beside ``--out`` and renamed into place only
when the report is complete, so a failure or Ctrl-C never leaves a half export where a user would
take it for a good one. A variant whose LiteRT accuracy is off by more than the tolerance is moved
to ``rejected/`` and marked ❎; one that failed is marked ❌; either makes the command exit 1.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dlkit.errors import DlkitError, first_line
from dlkit.runs import METRICS, MODEL, Run
from dlkit.versions import versions

from . import report
from .convert import MODES
from .report import FAILED, OFF, OK, Row

VARIANT = {"none": "float32", "float16": "float16", "dynamic": "dynamic", "int8": "int8"}


@dataclass
class ExportOptions:
    quantize: tuple[str, ...] = ("none",)
    prune: float | None = None
    structured: str | None = None
    block: int | None = None
    qat: bool = False
    out: str | None = None
    runs: str = "runs"
    fine_tune_epochs: int = 2
    qat_epochs: int = 1
    learning_rate: float = 5e-4     # pruning fine-tune
    qat_learning_rate: float = 1e-4
    tolerance: float = 1.0          # accuracy points
    test_samples: int = 0           # 0: the run's own test set
    fine_tune_samples: int = 0      # 0: the run's own training set
    latency_runs: int = 200


def parse_quantize(text: str) -> tuple[str, ...]:
    modes = [m.strip().lower() for m in text.split(",") if m.strip()] or ["none"]
    if modes == ["all"]:
        return MODES
    for mode in modes:
        if mode not in MODES:
            from dlkit.errors import suggest

            raise DlkitError(f"unknown quantize mode '{mode}'; choose {', '.join(MODES[:-1])} or {MODES[-1]} (or "
                             f"several, comma separated, or all).{suggest(mode, MODES)}")
    return tuple(dict.fromkeys(["none", *modes]))  # float32 always: it is the reference for size and latency


def check_options(opts: ExportOptions):
    """Validate before anything heavy is imported or written; returns the N:M or block pattern, or None."""
    from .prune import Block, Pattern

    if opts.prune is not None and not 0 < opts.prune < 1:
        raise DlkitError(f"--prune takes a sparsity strictly between 0 and 1 (e.g. 0.5); got {opts.prune}")
    pattern = None
    if opts.block is not None:
        if opts.prune is None:
            raise DlkitError("--block K needs --prune (e.g. --prune 0.5 --block 4)")
        if opts.structured:
            raise DlkitError("--block and --structured are two different sparsity patterns; choose one")
        pattern = Block.parse(opts.block)
    if opts.structured:
        if opts.prune is None:
            raise DlkitError("--structured N:M needs --prune (e.g. --prune 0.5 --structured 2:4)")
        pattern = Pattern.parse(opts.structured)
        implied = 1 - pattern.n / pattern.m
        if abs(opts.prune - implied) > 1e-6:
            raise DlkitError(f"--structured {pattern.n}:{pattern.m} prunes exactly {implied:g} of each group; "
                             f"pass --prune {implied:g}")
    return pattern


#: What the edge extra brings that the pipeline imports: always, and for --qat only.
EDGE_MODULES = ("ai_edge_litert",)                             # verify.py: every .tflite is run on LiteRT
QAT_MODULES = ("tensorflow_model_optimization", "tf_keras")   # qat.py: tfmot's QAT on a tf_keras mirror


def check_installed(opts: ExportOptions) -> None:
    """One line naming the missing modules and the extra that installs them, before anything is written."""
    import importlib.util

    needed = EDGE_MODULES + (QAT_MODULES if opts.qat else ())
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise DlkitError(f"dlkit export needs the edge extra (missing: {', '.join(missing)}): "
                         f"pip install 'dlkit[edge]'")


def find_run(target: str, runs_root: str) -> Run:
    """A run folder, or an algorithm name → its latest completed run with a model under ``runs_root``."""
    path = Path(target)
    if path.exists() or os.sep in target or target.startswith("."):
        run = Run.open(path)
    else:
        from dlkit import registry

        entry = registry.get(target)  # unknown names get a did-you-mean
        base = Path(runs_root) / entry.name
        done = [p for p in base.glob("*") if (p / MODEL).is_file() and (p / METRICS).is_file()
                and Run(p).metrics.get("status") == "completed"]
        if not done:
            raise DlkitError(f"no completed run of '{entry.name}' under {base}/; train one first "
                             f"(dlkit train {entry.name}) or pass a run folder")
        run = Run(max(done, key=lambda p: (Run(p).metrics.get("created", ""), p.name)))
    if not run.model_path.is_file():
        raise DlkitError(f"no {MODEL} in {run.path}: nothing to export (the run was interrupted before its "
                         f"first epoch ended, or failed)")
    return run


def export(target: str, opts: ExportOptions, echo=print) -> tuple[Path, list[Row]]:
    pattern = check_options(opts)
    check_installed(opts)
    run = find_run(target, opts.runs)
    from dlkit.training import load_prepared, load_run_model, run_plugin

    entry, cfg = run_plugin(run)
    if entry.cls.task != "classification":
        raise DlkitError(f"dlkit export verifies classification accuracy; '{entry.name}' is a {entry.cls.task} model")
    # a .keras file is backend-neutral: a JAX/Torch run exports the same; plugin.run is set, so a plugin
    # reads its run's artifacts (a vocabulary) as it does in evaluate
    plugin, model = load_run_model(run, entry, cfg, "tensorflow")
    try:
        data = load_prepared(entry, plugin, cfg)
    except DlkitError as exc:
        raise DlkitError(f"export needs {entry.name}'s data to verify the model and calibrate int8: {exc}") from None
    x_test, y_test = data.x_test, data.y_test
    if not data.class_names or y_test is None or getattr(y_test, "ndim", 0) != 1:
        # the plugin's task is per class, its data per run: an lstm forecasting co2 is not a classifier
        raise DlkitError(f"dlkit export verifies classification accuracy; this {entry.name} run was trained on "
                         f"'{data.name}', whose test targets are not class labels")
    if opts.test_samples:
        x_test, y_test = x_test[:opts.test_samples], y_test[:opts.test_samples]
    x_fit, y_fit = data.x_train, data.y_train
    if opts.fine_tune_samples:
        x_fit, y_fit = x_fit[:opts.fine_tune_samples], y_fit[:opts.fine_tune_samples]
    if len(x_fit) == 0 and ("int8" in opts.quantize or opts.prune or opts.qat):
        raise DlkitError("no representative data: the run's training set is empty, so int8 calibration, pruning "
                         "and QAT are impossible; export with --quantize float16 or dynamic")

    out = Path(opts.out) if opts.out else Path("exports") / entry.name / run.path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".partial-{out.name}-", dir=out.parent))
    try:
        rows = _variants(entry.name, model, opts, pattern, stage, x_fit, y_fit, x_test, y_test, echo)
        meta = {"algorithm": entry.name, "run": str(run.path), "trained_on": run.metrics.get("backend", "?"),
                "dataset": data.name, "test_samples": int(len(x_test)), "tolerance": opts.tolerance,
                "latency_runs": opts.latency_runs, "options": {k: v for k, v in vars(opts).items()},
                "machine": f"{platform.machine()} CPU ({os.cpu_count()} cores)",
                "versions": versions(("keras", "numpy", "tensorflow", "ai-edge-litert",
                                      "tensorflow-model-optimization"))}
        meta["input"] = _input_description(stage, data, x_test)
        report.write(stage, meta, rows)
        if out.exists():
            old = out.with_name(f".old-{out.name}-{os.getpid()}")
            os.replace(out, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out, rows


def _input_description(stage: Path, data, x_test) -> str:
    """What a device feeds the ``.tflite``; a text model's vocabulary is written beside it."""
    import numpy as np

    shape = "[batch, " + ", ".join(map(str, np.shape(x_test)[1:])) + "]"
    vocabulary = data.info.get("vocabulary")
    if not vocabulary:
        return f"{np.asarray(x_test).dtype} {shape}, as the plugin's test data (preprocessing stays outside the file)"
    from dlkit.files import write_json

    write_json(stage / "vocabulary.json", vocabulary)
    length = np.shape(x_test)[1]
    return (f"int32 token ids [1, {length}]: text preprocessing stays outside the file. Replace '<br />' with "
            f"spaces, lower-case, strip punctuation, split on whitespace; map each token to its index in "
            f"vocabulary.json ({len(vocabulary)} entries; 0 is padding, 1 any unknown token); keep the last "
            f"{length} ids and pad at the front with 0 (dlkit.text.encode does exactly this)")


def _variants(name, model, opts, pattern, stage, x_fit, y_fit, x_test, y_test, echo) -> list[Row]:
    import keras
    import numpy as np

    from dlkit.runs import save_model

    from . import convert, prune, verify

    def keras_accuracy(m) -> float:
        return float(np.mean(np.argmax(m.predict(x_test, batch_size=256, verbose=0), -1) == y_test))

    def tflite_row(variant: str, blob: bytes, reference: float, reference_name: str, note: str = "") -> Row:
        path = convert.write(blob, stage / f"{name}_{variant}.tflite")
        row = Row(variant, path.name, reference=reference_name, note=note)
        try:
            row.accuracy = verify.accuracy(path, x_test, y_test)
            row.size, row.gzip_size = path.stat().st_size, verify.gzip_size(path)
            row.sparsity = verify.weight_sparsity(path)
            row.latency_ms = verify.latency_ms(path, x_test[0], runs=opts.latency_runs)
        except Exception as exc:  # the file exists but LiteRT cannot run it: never ship that
            path.unlink()
            row.status, row.file, row.note = FAILED, "", f"LiteRT could not run it: {first_line(exc)[:200]}"
            return row
        drop = 100 * (reference - row.accuracy)
        if drop > opts.tolerance:
            (stage / "rejected").mkdir(exist_ok=True)
            os.replace(path, stage / "rejected" / path.name)
            row.status, row.file = OFF, f"rejected/{path.name}"
            row.note = (row.note + "; " if row.note else "") + f"{drop:.2f} pt below {reference_name}"
        echo(f"  {variant}: accuracy {row.accuracy:.4f}, {row.size / 1024:.1f} KiB, {row.latency_ms:.3f} ms {row.status}")
        return row

    rows: list[Row] = []
    dense_acc = keras_accuracy(model)
    dense_sparsity = prune.measure(model)["kernel_sparsity"]
    rows.append(Row("keras float32", "", dense_acc, reference="", sparsity=dense_sparsity,
                    note="the trained model (reference)"))
    echo(f"keras model: accuracy {dense_acc:.4f} on {len(x_test)} test examples")
    reference_acc, reference_name, suffix = dense_acc, "keras float32", ""

    if opts.prune is not None:
        rows.append(tflite_row("float32-dense", convert.to_tflite(model, "none"), dense_acc, "keras float32",
                               note="before pruning, for size comparison"))
        summary = prune.prune(model, x_fit, y_fit, opts.prune, pattern=pattern, epochs=opts.fine_tune_epochs,
                              learning_rate=opts.learning_rate, echo=echo)
        model.compile(optimizer="adam", loss=model.loss, metrics=["accuracy"])  # no fine-tuning state in the file
        save_model(model, stage / f"{name}_pruned.keras")  # plain Keras 3: loads on every backend
        pruned_acc = keras_accuracy(model)
        label = f"pruned{round(100 * opts.prune)}" + (f"-{pattern.label}" if pattern else "")
        rows.append(Row(f"keras float32 {label}", f"{name}_pruned.keras", pruned_acc, reference="keras float32",
                        size=(stage / f"{name}_pruned.keras").stat().st_size, sparsity=summary["kernel_sparsity"],
                        note=f"{100 * (pruned_acc - dense_acc):+.2f} pt vs dense; {len(summary['layers'])} kernels "
                             f"pruned"))
        echo(f"pruned model: accuracy {pruned_acc:.4f}, kernel sparsity {summary['kernel_sparsity']:.3f}")
        reference_acc, reference_name, suffix = pruned_acc, f"keras {label}", f"-{label}"

    for mode in opts.quantize:
        variant = VARIANT[mode] + suffix
        try:
            # int8 calibration of a recurrent loop can crash TensorFlow's calibrator: in a child process
            isolate = mode == "int8" and convert.static_batch(model) is not None
            blob = (convert.to_tflite_isolated(model, mode, x_fit, name) if isolate
                    else convert.to_tflite(model, mode, x_fit))
        except convert.UnsupportedOps:
            raise  # the model itself cannot go to TFLite: the whole export fails, nothing is kept
        except DlkitError as exc:
            rows.append(Row(variant, status=FAILED, note=str(exc)))
            continue
        rows.append(tflite_row(variant, blob, reference_acc, reference_name))

    if opts.qat:
        rows.append(_qat_row(name, model, opts, stage, x_fit, y_fit, reference_acc, reference_name, suffix,
                             tflite_row, echo))
    return rows


def _qat_row(name, model, opts, stage, x_fit, y_fit, reference_acc, reference_name, suffix, tflite_row, echo) -> Row:
    """Run edge/qat.py in its own process (tfmot flips tf.keras to legacy Keras for a whole process)."""
    import numpy as np

    from dlkit.runs import save_model

    variant = "int8-qat" + suffix
    with tempfile.TemporaryDirectory(prefix="dlkit-qat-") as tmp:
        tmp = Path(tmp)
        save_model(model, tmp / "model.keras")
        np.savez(tmp / "train.npz", x_train=x_fit, y_train=y_fit)
        command = [sys.executable, "-m", "dlkit.edge.qat", str(tmp / "model.keras"), str(tmp / "train.npz"),
                   str(tmp / "qat.tflite"), "--epochs", str(opts.qat_epochs),
                   "--learning-rate", str(opts.qat_learning_rate)]
        if opts.prune is not None:
            command.append("--preserve-sparsity")
        echo(f"quantization-aware training (tfmot, separate process): {opts.qat_epochs} epoch(s)")
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        lines = done.stdout.splitlines()
        error = next((line[len("QAT-ERROR: "):] for line in lines if line.startswith("QAT-ERROR: ")), None)
        if done.returncode or not (tmp / "qat.tflite").is_file():
            if error is None:
                tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
                error = tail[-1] if tail else f"exit status {done.returncode}"
            return Row(variant, status=FAILED, note=f"QAT failed: {error[:300]}")
        return tflite_row(variant, (tmp / "qat.tflite").read_bytes(), reference_acc, reference_name,
                          note=f"tfmot QAT, {opts.qat_epochs} epoch(s)")
