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


def test_a_short_spelling_parses_like_the_long_one():
    @dataclass
    class Samples:
        samples: int = option(64, "Samples.", min=1, short="-n")

    command = click.Command("generate", params=click_options(Samples), callback=lambda **kw: kw)
    assert command.main(["-n", "8"], standalone_mode=False) == {"samples": 8}
    assert command.main(["--samples", "9"], standalone_mode=False) == {"samples": 9}
    with pytest.raises(click.BadParameter, match="0 is not in the range x>=1"):
        command.main(["-n", "0"], standalone_mode=False)


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


@dataclass
class ListConfig(TrainConfig):
    hidden: tuple[int, ...] = option((512, 256), "Widths.", min=1)
    rates: tuple[float, ...] = option((0.1,), "Rates.", min=0.0, max=1.0)
    steps: int | None = option(None, "Optional step budget.", min=1)
    name: str | None = option(None, "Optional name.")


@pytest.mark.parametrize("given, expected", [("64,32", (64, 32)), ("128", (128,)), (" 8 , 4 ", (8, 4)),
                                             ([16, 8], (16, 8)), ((3,), (3,))])
def test_tuple_options_take_comma_lists(given, expected):
    assert make_config(ListConfig, {"hidden": given}).hidden == expected


@pytest.mark.parametrize("values, message", [
    ({"hidden": "a,b"}, "--hidden: 'a' is not a valid integer"),
    ({"hidden": "64,0"}, "--hidden: 0 is not in the range x>=1"),
    ({"hidden": ""}, "--hidden: expects one or more comma-separated values"),
    ({"hidden": [64, 1.5]}, "--hidden expects int,…, got [64, 1.5]"),
    ({"rates": "0.5,2"}, "--rates: 2.0 is not in the range 0.0<=x<=1.0"),
    ({"steps": "0"}, "--steps: 0 is not in the range x>=1"),
    ({"steps": "many"}, "--steps: 'many' is not a valid integer"),
])
def test_tuple_and_optional_options_say_what_was_received(values, message):
    with pytest.raises(DlkitError) as info:
        make_config(ListConfig, values)
    assert message in str(info.value)


def test_optional_options_default_to_none_and_accept_none():
    assert make_config(ListConfig, {}).steps is None
    assert make_config(ListConfig, {"steps": "200"}).steps == 200
    assert make_config(ListConfig, {"steps": "none", "name": "None"}).steps is None
    rows = {r["option"]: r for r in describe(ListConfig)}
    assert rows["--hidden"]["type"] == "int [1..],…" and rows["--hidden"]["default"] == (512, 256)
    assert rows["--steps"]["type"] == "int [1..] | none"


def test_unsupported_field_types_are_refused_with_the_field_name():
    @dataclass
    class Bad(TrainConfig):
        sizes: dict = option(None, "Sizes.")

    with pytest.raises(TypeError, match="config field 'sizes': unsupported type"):
        describe(Bad)


def test_data_is_a_choice_of_the_plugins_datasets_with_its_real_default():
    datasets = ("fashion_mnist", "mnist")
    options = {o.name: o for o in click_options(ToyConfig, datasets)}
    assert list(options["data"].type.choices) == list(datasets) and options["data"].default == "fashion_mnist"
    assert make_config(ToyConfig, {}, datasets).data == "fashion_mnist"
    with pytest.raises(DlkitError, match="'mnits' is not one of 'fashion_mnist', 'mnist'. Did you mean 'mnist'"):
        make_config(ToyConfig, {"data": "mnits"}, datasets)
    assert {r["option"]: r for r in describe(ToyConfig, datasets)}["--data"]["default"] == "fashion_mnist"


def test_mlp_hidden_is_a_list_of_widths():
    assert make_config(MLPConfig, {"hidden": "64"}).hidden == (64,)
    assert make_config(MLPConfig, {"hidden": "512,256"}).hidden == MLPConfig().hidden == (512, 256)
