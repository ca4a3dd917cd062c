"""Plugin hygiene through the real entry-point path: temporary distributions on PYTHONPATH.

Each distribution is what ``pip install`` leaves behind — a ``NAME.dist-info/`` with METADATA and
entry_points.txt beside its module — so ``importlib.metadata`` finds it exactly as it finds an
installed one. Every check runs ``python -m dlkit`` in a fresh process and reads its output.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOOD = '''
    """A tiny dense classifier on 8×8 digits: the plugin that keeps working beside the broken ones."""
    from dataclasses import dataclass

    from dlkit.api import Algorithm, TrainConfig, option


    @dataclass
    class GoodConfig(TrainConfig):
        units: int = option(16, "Hidden units.", min=1)


    class Good(Algorithm):
        name = "good"
        summary = "good plugin"
        config = GoodConfig
        datasets = ("digits",)

        def build(self, cfg, data):
            import keras

            model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(),
                                      keras.layers.Dense(cfg.units, activation="relu"),
                                      keras.layers.Dense(data.num_classes, activation="softmax")])
            model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
            return model
'''


def _plugin(cls: str, body: str = "", doc: str = "") -> str:
    """A plugin class whose build is never reached; ``body`` sets the attributes under test."""
    return f'''
    from dataclasses import dataclass, field

    from dlkit.api import Algorithm, TrainConfig


    class {cls}(Algorithm):
        summary = "{doc or cls}"
        datasets = ("digits",)
{textwrap.indent(textwrap.dedent(body), " " * 8)}
'''


DISTRIBUTIONS = {
    # distribution: (module source by module name, entry points)
    "dlkit-good": ({"dlkit_good": GOOD}, {"good": "dlkit_good:Good"}),
    "dlkit-broken": ({"dlkit_broken": "import dlkit_no_such_dependency\n",
                      "dlkit_exits": "import sys\nsys.exit(3)\n"},
                     {"broken": "dlkit_broken:Broken", "exits": "dlkit_exits:Exits"}),
    "dlkit-oldapi": ({"dlkit_oldapi": _plugin("OldApi", "api_version = 0")}, {"oldapi": "dlkit_oldapi:OldApi"}),
    "dlkit-backends": ({"dlkit_backends": _plugin("JaxOnly", 'backends = ("jax",)') + _plugin(
        "MxNet", 'backends = ("tensorflow", "mxnet")') + _plugin("Unstated", 'backends = "jax"')},
        {"jaxonly": "dlkit_backends:JaxOnly", "mxnet": "dlkit_backends:MxNet",
         "unstated": "dlkit_backends:Unstated"}),
    "dlkit-badconfig": ({"dlkit_badconfig": _plugin("BadConfig", '''
        @dataclass
        class Options(TrainConfig):
            sizes: list = field(default_factory=list)

        config = Options
        ''')}, {"badconfig": "dlkit_badconfig:BadConfig"}),
    "dlkit-faulty": ({"dlkit_faulty": _plugin("Faulty", '''
        def load_data(self, cfg):
            raise RuntimeError("no data here\\nsecond line")

        def custom_objects(self):
            raise KeyError("MyLayer")
        ''') + _plugin("Fragile", '''
        def __init__(self):
            raise ValueError("cannot start")
        ''')}, {"faulty": "dlkit_faulty:Faulty", "fragile": "dlkit_faulty:Fragile"}),
    # two distributions register 'twin'; the second also shadows the built-in 'cnn'
    "dlkit-twin-a": ({"dlkit_twin_a": _plugin("Twin", doc="twin from A")}, {"twin": "dlkit_twin_a:Twin"}),
    "dlkit-twin-b": ({"dlkit_twin_b": _plugin("Twin", doc="twin from B") + _plugin("Cnn", doc="cnn from B")},
                     {"twin": "dlkit_twin_b:Twin", "cnn": "dlkit_twin_b:Cnn"}),
}


def write_distribution(site: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str],
                       version: str = "0.1") -> None:
    """What an installer writes: the modules and a dist-info with METADATA and entry_points.txt."""
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[dlkit.algorithms]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items()))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("site")
    for dist, (modules, eps) in DISTRIBUTIONS.items():
        write_distribution(path, dist, modules, eps)
    return path


@pytest.fixture
def dlkit(site, tmp_path):
    """``python -m dlkit ARGS`` with the temporary distributions importable."""
    def run(*args: str, **env: str):
        base = {k: v for k, v in os.environ.items() if k not in ("DLKIT_PLUGINS", "DLKIT_STRICT")}
        pythonpath = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        return subprocess.run([sys.executable, "-m", "dlkit", *args], capture_output=True, text=True,
                              env={**base, "PYTHONPATH": pythonpath, **env}, cwd=tmp_path, timeout=300)
    return run


def listing(result) -> dict[tuple[str, str], str]:
    assert result.returncode == 0, result.stderr
    return {(row["distribution"], row["name"]): row["status"] for row in json.loads(result.stdout)}


def test_broken_plugins_are_listed_with_distribution_and_reason(dlkit):
    result = dlkit("list", "--json")
    status = listing(result)
    assert status[("dlkit", "mlp")] == "ok"
    assert status[("dlkit-good", "good")] == "ok"
    assert status[("dlkit-broken", "broken")] == \
        "broken: import failed: ModuleNotFoundError: No module named 'dlkit_no_such_dependency'"
    assert status[("dlkit-broken", "exits")] == "broken: import failed: SystemExit: 3"
    assert status[("dlkit-badconfig", "badconfig")].startswith("broken: config Options: TypeError: config field 'sizes'")
    for line in (result.stdout + result.stderr).splitlines():  # one line each, no traceback
        assert "Traceback" not in line
    table = dlkit("list")
    assert table.returncode == 0
    row = next(line for line in table.stdout.splitlines() if line.startswith("broken "))
    assert "dlkit-broken 0.1" in row and "No module named 'dlkit_no_such_dependency'" in row


def test_the_rest_of_the_cli_works_beside_broken_plugins(dlkit, tmp_path):
    assert dlkit("--help").returncode == 0
    info = dlkit("info", "mlp")
    assert info.returncode == 0 and "--hidden" in info.stdout
    trained = dlkit("train", "dlkit-good:good", "--backend", "tensorflow", "--epochs", "1",
                    "--train-samples", "128", "--test-samples", "64", "--out", str(tmp_path / "runs"))
    assert trained.returncode == 0, trained.stderr
    assert "done: test accuracy" in trained.stdout
    run_dir = next((tmp_path / "runs" / "good").iterdir())
    assert json.loads((run_dir / "metrics.json").read_text())["plugin"]["distribution"] == "dlkit-good"


def test_using_a_broken_plugin_is_one_clear_line(dlkit):
    result = dlkit("train", "broken", "--epochs", "1")
    assert result.returncode != 0
    assert "plugin 'broken' from dlkit-broken is broken: import failed: ModuleNotFoundError" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_plugin_raising_in_a_hook_is_one_line_naming_plugin_distribution_and_hook(dlkit, tmp_path):
    failed = dlkit("train", "faulty", "--backend", "jax", "--out", str(tmp_path / "runs"))
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-1] == \
        "Error: plugin 'faulty' (dlkit-faulty) failed in load_data(): RuntimeError: no data here"
    assert "Traceback" not in failed.stderr
    fragile = dlkit("train", "fragile")
    assert fragile.returncode == 1
    assert fragile.stderr.splitlines()[-1] == \
        "Error: plugin 'fragile' (dlkit-faulty) failed in __init__(): ValueError: cannot start"
    run_dir = tmp_path / "run"  # evaluate asks custom_objects() before it opens model.keras
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(
        {"algorithm": "faulty", "distribution": "dlkit-faulty", "backend": "jax", "config": {}}))
    reloaded = dlkit("evaluate", str(run_dir))
    assert reloaded.returncode == 1
    assert reloaded.stderr.splitlines()[-1] == \
        "Error: plugin 'faulty' (dlkit-faulty) failed in custom_objects(): KeyError: 'MyLayer'"


def test_strict_mode_shows_the_traceback(dlkit):
    result = dlkit("list", DLKIT_STRICT="1", DLKIT_PLUGINS="broken")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "No module named 'dlkit_no_such_dependency'" in result.stderr
    assert "RuntimeError: plugin 'broken' from dlkit-broken failed to import" in result.stderr
    exits = dlkit("list", DLKIT_STRICT="1", DLKIT_PLUGINS="exits")  # even sys.exit() gets its traceback
    assert exits.returncode != 0 and "SystemExit: 3" in exits.stderr


def test_api_version_mismatch_is_reported(dlkit):
    status = listing(dlkit("list", "--json"))
    assert status[("dlkit-oldapi", "oldapi")] == (
        "broken: written for dlkit plugin API 0, this dlkit provides API 1; "
        "install a matching version of the plugin or of dlkit")
    info = dlkit("info", "oldapi")
    assert info.returncode == 1 and "plugin 'oldapi' from dlkit-oldapi is broken: written for" in info.stderr


def test_backend_declarations(dlkit):
    status = listing(dlkit("list", "--json"))
    assert status[("dlkit-backends", "jaxonly")] == "ok"
    assert status[("dlkit-backends", "mxnet")].startswith("broken: declares unknown backend(s) ['mxnet']")
    assert status[("dlkit-backends", "unstated")].startswith("broken: backends must be a non-empty tuple")
    info = dlkit("info", "jaxonly")
    assert "backends: jax" in info.stdout
    refused = dlkit("train", "jaxonly", "--backend", "torch")  # refused before Keras is imported
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == "Error: this algorithm supports the jax backend(s), not torch."


@pytest.mark.parametrize("selection", ["dlkit-good", "dlkit_good", "good", "DLKIT.Good"])
def test_dlkit_plugins_chooses_what_loads(dlkit, selection):
    result = dlkit("list", "--json", DLKIT_PLUGINS=selection)
    status = listing(result)
    assert status[("dlkit-good", "good")] == "ok"
    assert status[("dlkit", "cnn")] == "ok"  # built-ins always load
    # not even imported: the broken module would otherwise say 'broken'
    assert status[("dlkit-broken", "broken")] == "disabled (DLKIT_PLUGINS)"
    assert status[("dlkit-twin-b", "cnn")] == "disabled (DLKIT_PLUGINS)"
    assert "warning" not in result.stderr  # no duplicate left, no unknown name


def test_dlkit_plugins_empty_means_built_ins_only(dlkit):
    status = listing(dlkit("list", "--json", DLKIT_PLUGINS=""))
    assert {key for key, value in status.items() if value == "ok"} == {
        key for key in status if key[0] == "dlkit"}
    refused = dlkit("train", "good", DLKIT_PLUGINS="")
    assert refused.returncode != 0
    assert "plugin 'good' from dlkit-good is disabled by DLKIT_PLUGINS" in refused.stderr


def test_dlkit_plugins_typo_is_warned(dlkit):
    result = dlkit("list", DLKIT_PLUGINS="dlkit-goood")
    assert result.returncode == 0
    assert "DLKIT_PLUGINS names 'dlkit-goood', which is no installed plugin or distribution." in result.stderr
    assert "Did you mean 'dlkit-good'?" in result.stderr


def test_duplicates_warn_naming_both_distributions(dlkit):
    result = dlkit("list", "--json")
    status = listing(result)
    assert status[("dlkit-twin-a", "twin")] == "ok"
    assert status[("dlkit-twin-b", "twin")] == "ok (shadowed by dlkit-twin-a:twin)"
    assert ("warning: algorithm 'twin' is registered by dlkit-twin-a, dlkit-twin-b; using dlkit-twin-a "
            "(choose another with DIST:twin, e.g. dlkit-twin-b:twin)") in result.stderr
    # a built-in keeps its name against a third-party plugin
    assert status[("dlkit", "cnn")] == "ok"
    assert status[("dlkit-twin-b", "cnn")] == "ok (shadowed by dlkit:cnn)"
    assert "algorithm 'cnn' is registered by dlkit, dlkit-twin-b; using dlkit" in result.stderr


def test_dist_name_picks_one(dlkit):
    assert "twin from A" in dlkit("info", "twin").stdout
    assert "twin from B" in dlkit("info", "dlkit-twin-b:twin").stdout
    assert "twin from B" in dlkit("info", "dlkit_twin_b:twin").stdout  # either spelling of the distribution
    assert "cnn from B" in dlkit("info", "dlkit-twin-b:cnn").stdout
    wrong = dlkit("info", "dlkit-good:twin")
    assert wrong.returncode == 1
    assert "distribution 'dlkit-good' provides no algorithm 'twin'; 'twin' comes from dlkit-twin-a, " \
           "dlkit-twin-b" in wrong.stderr


def test_plugin_option_picks_one_for_every_command(dlkit):
    chosen = dlkit("--plugin", "dlkit-twin-b:twin", "list", "--json")
    status = listing(chosen)
    assert status[("dlkit-twin-b", "twin")] == "ok"
    assert status[("dlkit-twin-a", "twin")] == "ok (shadowed by dlkit-twin-b:twin)"
    assert "'twin' is registered by" not in chosen.stderr  # settled, so no warning
    assert "twin from B" in dlkit("--plugin", "dlkit-twin-b:twin", "info", "twin").stdout
    assert "cnn from B" in dlkit("--plugin", "dlkit-twin-b:cnn", "info", "cnn").stdout
    bad = dlkit("--plugin", "twin", "list")
    assert bad.returncode == 1 and "--plugin expects DIST:NAME (e.g. dlkit-foo:cnn), got 'twin'" in bad.stderr
    broken = dlkit("--plugin", "dlkit-broken:broken", "list")
    assert broken.returncode == 1 and "plugin 'broken' from dlkit-broken is broken" in broken.stderr
