"""Config dataclass → CLI options, and the validation shared by the CLI and the Python API."""
from __future__ import annotations

from dataclasses import dataclass

import click
import pytest

from dlkit.api import TrainConfig, option
from dlkit.config import click_options, describe, make_config
from dlkit.errors import DlkitError
from dlkit.plugins.cnn import CNNConfig
from dlkit.plugins.mlp import MLPConfig


@dataclass
class ToyConfig(TrainConfig):
    width: int = option(8, "Units.", min=1, max=64)
    rate: float = option(0.5, "A rate.", min=0.0, max=1.0)
    act: str = option("relu", "Activation.", choices=("relu", "tanh"))
    bias: bool = option(True, "Use a bias.")


def test_every_field_becomes_an_option_with_type_default_and_help():
    options = {o.name: o for o in click_options(ToyConfig)}
    assert {"epochs", "batch_size", "data", "seed", "width", "rate", "act", "bias"} <= set(options)
    assert options["width"].opts == ["--width"] and options["batch_size"].opts == ["--batch-size"]
    assert isinstance(options["width"].type, click.IntRange) and options["width"].type.max == 64
    assert isinstance(options["act"].type, click.Choice) and list(options["act"].type.choices) == ["relu", "tanh"]
    assert options["rate"].default == 0.5 and options["rate"].help == "A rate."
    assert options["bias"].is_flag and options["bias"].secondary_opts == ["--no-bias"]


def test_plugin_defaults_override_the_common_ones():
    assert CNNConfig().epochs == 3 and MLPConfig().epochs == 10
    assert {r["option"] for r in describe(MLPConfig)} >= {"--activation", "--hidden", "--epochs"}


def test_make_config_converts_strings_like_the_cli():
    cfg = make_config(ToyConfig, {"width": "16", "rate": "0.25", "act": "tanh", "bias": "false"})
    assert (cfg.width, cfg.rate, cfg.act, cfg.bias) == (16, 0.25, "tanh", False)


@pytest.mark.parametrize("values, message", [
    ({"widht": 3}, "unknown option --widht for this algorithm. Did you mean 'width'?"),
    ({"width": "wide"}, "--width: 'wide' is not a valid integer"),
    ({"width": 1.5}, "--width expects int, got 1.5"),
    ({"width": True}, "--width expects int, got True"),
    ({"width": 100}, "--width: 100 is not in the range 1<=x<=64"),
    ({"act": "gelu"}, "--act: 'gelu' is not one of 'relu', 'tanh'"),
    ({"rate": -0.1}, "--rate: -0.1 is not in the range 0.0<=x<=1.0"),
])
def test_bad_values_say_what_was_received(values, message):
    with pytest.raises(DlkitError) as info:
        make_config(ToyConfig, values)
    assert message in str(info.value)


def test_mlp_hidden_widths_are_validated():
    from dlkit.plugins.mlp import hidden_widths

    assert hidden_widths("512, 256") == [512, 256]
    for bad in ("", "a,b", "0,10"):
        with pytest.raises(DlkitError, match="--hidden expects positive integers"):
            hidden_widths(bad)
