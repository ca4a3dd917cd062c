"""The ``dlkit`` command line.

Nothing here imports Keras or a backend at module level: ``--help``, ``--version`` and ``list``
stay instant, and ``train --backend`` can still choose the backend. User mistakes become one line
on stderr and a non-zero exit; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import fnmatch
import json
import sys
import warnings
from pathlib import Path

import click

from dlkit import __version__, registry
from dlkit.errors import DlkitError, TrainingInterrupted

BACKEND_HELP = ("Keras backend: tensorflow (tf), jax or torch (pytorch), or auto (the fastest that 'dlkit benchmark' "
                "measured for this algorithm here). Default: $KERAS_BACKEND or tensorflow.")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


# Commands that live with their feature, imported only when invoked (or listed by --help):
# their modules import click alone at top level, so --help stays instant.
LAZY_COMMANDS = {
    "export": ("dlkit.edge.cli:export", "the edge pipeline (pip install 'dlkit[edge]')"),
    "new": ("dlkit.scaffold:new", "the plugin scaffold"),
}


class DlkitGroup(click.Group):
    """Turns DlkitError into a one-line error (exit 1; 130 for Ctrl-C), unless --debug."""

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx, name):
        if name in self.commands or name not in LAZY_COMMANDS:
            return super().get_command(ctx, name)
        target, what = LAZY_COMMANDS[name]
        module, _, attr = target.partition(":")
        try:
            return getattr(__import__(module, fromlist=[attr]), attr)
        except ImportError as exc:
            return _unavailable_command(name, f"'dlkit {name}' needs {what}: {exc}")

    def invoke(self, ctx):
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except TrainingInterrupted as exc:
            click.echo(f"interrupted: {exc}", err=True)
            ctx.exit(130)
        except DlkitError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)


def _unavailable_command(name: str, reason: str) -> click.Command:
    def fail(**_):
        raise click.ClickException(reason)

    return click.Command(name, callback=fail, help=f"(unavailable) {reason}",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


@click.group(cls=DlkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dlkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("--plugin", "plugins", multiple=True, metavar="DIST:NAME",
              help="Use distribution DIST's NAME where several register NAME (repeatable).")
@click.pass_context
def main(ctx: click.Context, debug: bool, plugins: tuple[str, ...]) -> None:
    """dlkit: classic deep-learning algorithms on real data, on TensorFlow, JAX or PyTorch.

    \b
      dlkit list                        installed algorithms
      dlkit info cnn                    options, datasets, backends
      dlkit train cnn --backend jax     train; writes runs/cnn/<run-id>/
      dlkit evaluate RUN_DIR            reload the model and recompute its test metrics
      dlkit train --resume RUN_DIR      continue an interrupted run
      dlkit generate RUN_DIR            sample from a generative run (text, images)
    """
    ctx.obj = {"debug": debug}
    if debug:  # backends.activate then shows the frameworks' own start-up output too
        import os

        os.environ["DLKIT_DEBUG"] = "1"
    for spec in plugins:
        registry.choose(spec)


# -- list / info ------------------------------------------------------------------------------------
@main.command("list")
@click.argument("pattern", required=False, default="*")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(pattern: str, as_json: bool) -> None:
    """List algorithm plugins (optionally those matching a glob PATTERN, e.g. 'mobile*')."""
    entries = [e for e in registry.discover() if fnmatch.fnmatch(e.name, pattern)]
    if as_json:
        click.echo(json.dumps([{"name": e.name, "summary": e.summary, "distribution": e.distribution,
                                "version": e.version, "status": e.status} for e in entries], indent=2))
        return
    if not entries:
        click.echo(f"no algorithm matches '{pattern}'")
        return
    rows = [("NAME", "SUMMARY", "DISTRIBUTION", "STATUS")] + [
        (e.name, e.summary or "-", f"{e.distribution} {e.version}", e.status) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3])


@main.command()
@click.argument("algorithm")
def info(algorithm: str) -> None:
    """Show an algorithm's options, datasets and backends."""
    from dlkit.config import describe

    entry = registry.get(algorithm)
    algo = entry.cls
    click.echo(f"{entry.name} — {algo.summary}\n  from {entry.distribution} {entry.version} ({entry.target})")
    doc = sys.modules[algo.__module__].__doc__ or algo.__doc__  # the module docstring names the paper
    if doc:
        click.echo("\n" + "\n".join("  " + line for line in doc.strip().splitlines()))
    datasets = list(algo.datasets)
    if datasets:
        datasets[0] += " (default)"
    click.echo(f"\ndatasets: {', '.join(datasets) or '-'}")
    click.echo(f"backends: {', '.join(algo.backends)}")
    _option_table("options", describe(algo.config, algo.datasets))
    click.echo("\ncommon to every algorithm: --backend, --out (see 'dlkit train NAME --help')")
    if algo.generate_config is not None:
        _option_table("dlkit generate RUN_DIR options", describe(algo.generate_config))
    if algo.predict_config is not None:
        _option_table("dlkit predict RUN_DIR INPUT… options", describe(algo.predict_config))


def _option_table(title: str, rows: list[dict]) -> None:
    click.echo(f"\n{title}:")
    if not rows:
        return
    width = max(len(r["option"]) for r in rows)
    type_width = max(len(r["type"]) for r in rows)
    for r in rows:
        default = ",".join(map(str, r["default"])) if isinstance(r["default"], tuple) else r["default"]
        click.echo(f"  {r['option'].ljust(width)}  {r['type'].ljust(type_width)}  "
                   f"default {default!r:<10}  {r['help']}")


# -- train ----------------------------------------------------------------------------------------------
class TrainCommands(click.Group):
    """``dlkit train NAME``: one sub-command per plugin, built on demand from its config dataclass."""

    def list_commands(self, ctx):
        return [e.name for e in registry.discover() if e.cls is not None and not e.disabled]

    def get_command(self, ctx, name):
        entry = registry.get(name)  # raises a did-you-mean for unknown names
        return _train_command(entry)

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except DlkitError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.UsageError(str(exc), ctx) from None


def _train_command(entry: registry.PluginEntry) -> click.Command:
    from dlkit.config import click_options

    algo = entry.cls

    def callback(backend: str | None, out: str, distribute: str | None, devices: int | None, **options):
        from dlkit import training

        training.train(entry, backend=backend, out=out, echo=click.echo, distribute=distribute, devices=devices,
                       **options)

    params = [click.Option(["--backend", "-b"], default=None, help=BACKEND_HELP, metavar="NAME"),
              click.Option(["--out"], default="runs", show_default=True, help="Folder the run folders go under."),
              click.Option(["--distribute"], type=click.Choice(["data-parallel"]), default=None,
                           help="Train on several devices with keras.distribution (jax backend; docs/distributed.md)."),
              click.Option(["--devices"], type=int, default=None, metavar="N",
                           help="With --distribute: how many devices (default: all that jax sees).")]
    params += click_options(algo.config, algo.datasets)
    return click.Command(entry.name, callback=callback, params=params,
                         help=f"{algo.summary}\n\nDatasets: {', '.join(algo.datasets) or '-'}. "
                              f"Backends: {', '.join(algo.backends)}.",
                         short_help=algo.summary)


@main.group(cls=TrainCommands, invoke_without_command=True)
@click.option("--resume", "resume_dir", metavar="RUN_DIR", type=click.Path(file_okay=False),
              help="Continue an interrupted or failed run from its last checkpoint.")
@click.option("--backend", "-b", default=None, metavar="NAME",
              help="With --resume: the backend to continue on (default: the run's).")
@click.pass_context
def train(ctx: click.Context, resume_dir: str | None, backend: str | None) -> None:
    """Train an algorithm: dlkit train NAME [--backend jax] [--epochs N] [options].

    \b
    dlkit train --resume RUN_DIR continues a run that was interrupted (Ctrl-C, a kill, a crash)
    from its last checkpoint, with its optimizer state, to the end of its budget.
    """
    if resume_dir and ctx.invoked_subcommand:
        raise DlkitError("--resume continues a saved run with its own config: give the run folder only "
                         "(dlkit train --resume RUN_DIR)")
    if backend and not resume_dir:
        raise DlkitError("--backend goes after the algorithm's name (dlkit train NAME --backend B), or "
                         "with --resume")
    if resume_dir:
        from dlkit import training

        training.resume(resume_dir, backend=backend, echo=click.echo)
    elif not ctx.invoked_subcommand:
        click.echo(ctx.get_help())


# -- evaluate ---------------------------------------------------------------------------------------
@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--backend", "-b", default=None, metavar="NAME",
              help="Backend to evaluate on (default: the one the run trained on).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(run_dir: str, backend: str | None, as_json: bool) -> None:
    """Reload RUN_DIR/model.keras and recompute its test metrics (on any backend)."""
    from dlkit import training

    result = training.evaluate(run_dir, backend=backend, echo=(lambda *_: None) if as_json else click.echo)
    if as_json:
        result["test"].pop("confusion_matrix", None)
        click.echo(json.dumps(result, indent=2))


# -- generate / predict: options that belong to the run's plugin -------------------------------------
PLUGIN_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True}


def _plugin_options(name: str, params: list[click.Parameter], args: list[str], given_only: bool = False) -> dict:
    """Parse the plugin's own options (and arguments) from ``args`` into a dict, errors as one line.

    ``given_only``: just the options on the command line, so the plugin's defaults stay its own.
    """
    command = click.Command(name, params=params, add_help_option=False)
    try:
        with command.make_context(name, list(args), resilient_parsing=False) as ctx:
            return {k: v for k, v in ctx.params.items()
                    if not given_only or ctx.get_parameter_source(k) is click.core.ParameterSource.COMMANDLINE}
    except click.ClickException as exc:
        raise DlkitError(f"{name}: {exc.format_message()}") from None


@main.command(context_settings=PLUGIN_ARGS)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--backend", "-b", default=None, metavar="NAME", help="Backend to generate on (default: the run's).")
@click.option("--out", default=None, help="Folder for the samples (default: RUN_DIR/samples/<time>/).")
@click.pass_context
def generate(ctx: click.Context, run_dir: str, backend: str | None, out: str | None) -> None:
    """Sample from a trained run: text from a prompt, images from noise.

    \b
    The options after RUN_DIR are the plugin's own ('dlkit info NAME' lists them), e.g.
      dlkit generate runs/gpt/RUN --prompt "ROMEO:" --tokens 500 --temperature 0.8
      dlkit generate runs/gan/RUN -n 64 --label 3
    """
    from dlkit import training
    from dlkit.config import click_options

    _, entry, _ = training.open_run(run_dir)
    config = entry.cls.generate_config
    options = _plugin_options(f"dlkit generate ({entry.name})", click_options(config), ctx.args) if config else {}
    if config is None and ctx.args:
        raise DlkitError(f"{entry.name} runs do not generate samples")
    result = training.generate(run_dir, backend=backend, out=out, echo=click.echo, **options)
    click.echo(f"\nsamples: {result['out']}")


@main.command(context_settings=PLUGIN_ARGS)
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--backend", "-b", default=None, metavar="NAME", help="Backend to predict on (default: the run's).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def predict(ctx: click.Context, run_dir: str, backend: str | None, as_json: bool) -> None:
    """Run a trained model on INPUTs given on the command line: dlkit predict RUN_DIR "a text" …

    Options after RUN_DIR beyond --backend and --json are the plugin's own ('dlkit info NAME').
    """
    from dlkit import training
    from dlkit.config import click_options

    _, entry, _ = training.open_run(run_dir)
    config = entry.cls.predict_config
    params = [click.Argument(["inputs"], nargs=-1)] + (click_options(config) if config else [])
    parsed = _plugin_options(f"dlkit predict ({entry.name})", params, ctx.args)
    inputs = list(parsed.pop("inputs"))
    results = training.predict(run_dir, inputs, backend=backend, **parsed)
    if as_json:
        click.echo(json.dumps([{"input": text, **result} for text, result in zip(inputs, results)], indent=2))
        return
    for text, result in zip(inputs, results):
        shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())
        click.echo(f"{text!r} → {shown}")


# -- data / doctor -------------------------------------------------------------------------------------
@main.group()
def data() -> None:
    """Dataset cache: what is present, and adding files downloaded elsewhere."""


@data.command("list")
def data_list() -> None:
    """Every registered dataset (plugins' too): present, missing (from where, to where) or corrupt."""
    from dlkit import data as datasets

    rows = datasets.status()
    width = max([14, *(len(row["name"]) for row in rows)])
    click.echo(f"cache: {datasets.keras_cache_dir()}")
    for row in rows:
        state = "corrupt" if row["problems"] else "present" if row["present"] else "missing"
        click.echo(f"  {row['name']:<{width}}  {row['kind']:<6} {state}")
        details = [row["description"], *row["problems"]]
        details += [f"get {g['url']}" + (f" (or {', '.join(g['also'])})" if g["also"] else "") + f" → {g['path']}"
                    for g in row["get"]]
        for line in details:
            click.echo(f"  {'':<{width}}  {line}")
    if not all(row["present"] for row in rows):
        click.echo("\nMissing files are downloaded on first use (unless DLKIT_OFFLINE=1); add copies downloaded "
                   "elsewhere with 'dlkit data add FILE…'.")


@data.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def data_add(files: tuple[str, ...]) -> None:
    """Put dataset FILES downloaded elsewhere into the cache: recognised by name, sha256-checked, archives unpacked."""
    from pathlib import Path

    from dlkit import data as datasets

    for target in datasets.add_files([Path(f) for f in files], echo=click.echo):
        click.echo(f"added {target}")


@main.command(context_settings=PLUGIN_ARGS)
@click.argument("algorithm", required=False)
@click.option("--backends", "backend_list", default="tensorflow,jax,torch", show_default=True, metavar="LIST",
              help="Comma-separated backends, one process each.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per backend (default: the plugin's).")
@click.option("--train-samples", type=click.IntRange(min=1), default=None,
              help="Train on the first N examples (default: all).")
@click.option("--out", default=None, help="Folder for benchmark.json/.md (default: runs/benchmark/NAME-<time>/; "
                                          "with --all: benchmarks/).")
@click.option("--all", "every", is_flag=True, help="Every installed plugin on every backend (MATRIX.md).")
@click.option("--quick", is_flag=True, help="A small budget: the plugin's tiny test sizes, 1 epoch, 2,000 examples.")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds before a cell is stopped and marked ❌ (default: 600 with --quick, else 3600).")
@click.pass_context
def benchmark(ctx: click.Context, algorithm: str | None, backend_list: str, epochs: int | None,
              train_samples: int | None, out: str | None, every: bool, quick: bool, timeout: float | None) -> None:
    """Train and evaluate the same config once per backend and compare: dlkit benchmark NAME.

    \b
    One row per backend: status, headline metric, s/epoch, train and inference samples/s, peak
    memory, parameters; the fastest backend is remembered for 'dlkit train NAME --backend auto'.
    Other options are the plugin's own, as in 'dlkit train NAME' ('dlkit info NAME' lists them).
      dlkit benchmark cnn --epochs 1
      dlkit benchmark gpt --max-steps 200
      dlkit benchmark --all --quick --out benchmarks     (writes benchmarks/MATRIX.md)
    """
    from dlkit import benchmark as bench
    from dlkit.config import click_options, make_config

    timeout = timeout or (600 if quick else 3600)
    if every:
        if algorithm or epochs or train_samples or ctx.args:
            raise DlkitError("--all runs every plugin at the --quick budget: give no NAME, --epochs, --train-samples "
                              "or plugin options")
        if not quick:
            raise DlkitError("--all needs --quick (full budgets for every plugin on every backend take hours)")
        done = bench.matrix(backend_list, out or "benchmarks", timeout, echo=click.echo)
        click.echo(f"{done['cells']} cells in {done['seconds'] / 60:.1f} min → {Path(done['out']) / 'MATRIX.md'}")
        return
    if not algorithm:
        raise DlkitError("name an algorithm (dlkit benchmark NAME), or use --all --quick")
    entry = registry.get(algorithm)
    if entry.cls is None:
        raise DlkitError(f"{entry.name} is broken: {entry.error}")
    options = bench.quick_options(entry) if quick else {}
    options.update({k: v for k, v in {"epochs": epochs, "train_samples": train_samples}.items() if v is not None})
    if ctx.args:
        options.update(_plugin_options(f"dlkit benchmark {entry.name}", click_options(entry.cls.config, entry.cls.datasets),
                                       ctx.args, given_only=True))
    make_config(entry.cls.config, options, entry.cls.datasets)  # a wrong option is refused here, not per backend
    result = bench.benchmark(algorithm, backend_list, options, out, timeout, echo=click.echo)
    click.echo("")
    click.echo(bench.markdown(result))
    click.echo(f"written: {Path(result['out']) / 'benchmark.md'} and benchmark.json")


@main.command()
def doctor() -> None:
    """Python and library versions, which backends import, devices, and the dataset cache."""
    from dlkit import doctor as checks

    checks.report(click.echo)
