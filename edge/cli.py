"""``dlkit export``: click and the standard library only at import (edge/convert.py's top level is standard
library too), so ``dlkit --help`` stays instant."""
from __future__ import annotations

import click

from dlkit.edge.convert import MODES


@click.command()
@click.argument("target", metavar="ALGO|RUN_DIR")
@click.option("--tflite", is_flag=True, help="Export to TensorFlow Lite, verified with the LiteRT interpreter.")
@click.option("--quantize", default="none", show_default=True, metavar="MODE",
              help=f"{' | '.join(MODES)}, several comma separated, or all. float32 is always exported.")
@click.option("--prune", type=float, default=None, metavar="SPARSITY",
              help="Magnitude-prune to this sparsity (0 < s < 1) while fine-tuning, before converting.")
@click.option("--structured", default=None, metavar="N:M", help="With --prune: N:M structured sparsity (e.g. 2:4).")
@click.option("--block", type=int, default=None, metavar="K",
              help="With --prune: prune whole blocks of K consecutive input-channel weights (e.g. 4); "
                   "the zeros lie together in the file, so it gzips smaller.")
@click.option("--qat", is_flag=True, help="Add a quantization-aware-trained int8 variant (tfmot).")
@click.option("--out", default=None, help="Output folder. Default: exports/ALGO/RUN-ID.")
@click.option("--runs", default="runs", show_default=True, help="Where ALGO's latest run is looked for.")
@click.option("--fine-tune-epochs", type=int, default=2, show_default=True, help="Epochs of fine-tuning while pruning.")
@click.option("--qat-epochs", type=int, default=1, show_default=True, help="Epochs of quantization-aware training.")
@click.option("--learning-rate", type=float, default=5e-4, show_default=True,
              help="Adam learning rate of the pruning fine-tune (cosine-decayed).")
@click.option("--qat-learning-rate", type=float, default=1e-4, show_default=True,
              help="Adam learning rate of quantization-aware training (cosine-decayed).")
@click.option("--fine-tune-samples", type=int, default=0, show_default=True,
              help="Fine-tune (pruning, QAT) on the first N training examples (0 = the run's training set).")
@click.option("--test-samples", type=int, default=0, show_default=True,
              help="Verify on the first N test examples (0 = the run's test set).")
@click.option("--tolerance", type=float, default=1.0, show_default=True,
              help="Accuracy points a variant may lose against its Keras model before it is marked ❎.")
@click.option("--latency-runs", type=int, default=200, show_default=True, help="Invokes timed per variant.")
def export(target: str, tflite: bool, quantize: str, **options) -> None:
    """Export a trained model to .tflite, optionally pruned and quantized, and verify every variant.

    \b
    ALGO exports the latest completed run of that algorithm under --runs; RUN_DIR a given run.
    The model is loaded from model.keras on TensorFlow, whatever backend trained it.
      dlkit export mobilenet --tflite --quantize int8
      dlkit export runs/cnn/20250101-120000-jax --tflite --quantize all --prune 0.5 --qat
    Writes the .tflite files, export_report.json and export_report.md into --out.
    """
    from dlkit.errors import DlkitError

    if not tflite:
        raise DlkitError("choose an export format: --tflite (the only one so far)")
    for name in ("fine_tune_epochs", "qat_epochs", "latency_runs"):
        if options[name] < 1:
            raise DlkitError(f"--{name.replace('_', '-')} must be at least 1; got {options[name]}")
    if options["learning_rate"] <= 0 or options["qat_learning_rate"] <= 0 or options["tolerance"] < 0:
        raise DlkitError("--learning-rate and --qat-learning-rate must be > 0, --tolerance ≥ 0")
    from dlkit.edge.pipeline import ExportOptions, export as run_export, parse_quantize
    from dlkit.edge.report import FAILED, OK, text_table

    opts = ExportOptions(quantize=parse_quantize(quantize), **options)
    out, rows = run_export(target, opts, echo=click.echo)
    click.echo("\n" + text_table(rows) + "\n")
    click.echo(f"report: {out / 'export_report.md'}")
    bad = [r for r in rows if r.status != OK and r.status != ""]
    if bad:
        what = ", ".join(f"{r.variant} {r.status}{' (' + r.note + ')' if r.status == FAILED else ''}" for r in bad)
        raise DlkitError(f"{len(bad)} variant(s) did not verify: {what}; see {out / 'export_report.md'}")
