"""seq2seq: the generated dates (deterministic, split by day, every target the source's date), and the
encoder-decoder on TensorFlow, JAX and PyTorch: tiny training runs, attention that sums to 1 and
ignores padding, greedy decoding that agrees with the teacher-forced model, predict across backends
(with --plot), and one-line refusals.

Starting a backend costs more than the tiny models, so tests/seq2seq_check.py trains and checks in one
process per backend, two at a time: TensorFlow (Bahdanau, GRU) and JAX (Luong, LSTM) first, then
PyTorch (no attention, GRU), which also predicts with the other two runs, beside ``dlkit predict`` of
the TensorFlow run on JAX.
"""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path

import pytest

from dlkit.plugins import dates
from dlkit.plugins.seq2seq import LENGTH, OUTPUT_CHARS, clean, decode, encode_pairs
from tests.conftest import ONE_THREAD, run_check, run_cli

SCRIPT = Path(__file__).with_name("seq2seq_check.py")
PLAN = {"tensorflow": ("bahdanau", "gru"), "jax": ("luong", "lstm"), "torch": ("none", "gru")}


# -- the generated dates, without Keras ---------------------------------------------------------------------
def test_the_generator_is_deterministic_and_each_split_independent_of_the_others_sizes():
    first = dates.examples("test", 400)
    assert first == dates.examples("test", 400)
    assert dates.examples("test", 100) == first[:100]  # a bigger test set only adds examples
    assert dates.examples("test", 400, seed=dates.DATA_SEED + 1) != first
    assert dates.examples("train", 400) != first


def test_splits_are_disjoint_by_day_and_cover_the_calendar():
    days = dates.split_days()
    train, val, test = (set(days[s]) for s in dates.SPLITS)
    assert not (train & test) and not (train & val) and not (val & test)
    assert len(train | val | test) == (date(2049, 12, 31) - date(1950, 1, 1)).days + 1 == 36525
    assert (len(train), len(val), len(test)) == (29220, 3652, 3653)  # 80/10/10
    trained_on = {e.iso for e in dates.examples("train", 30000)}
    assert not trained_on & {e.iso for e in dates.examples("test", 5000)}
    assert not trained_on & {e.iso for e in dates.examples("val", 2000)}
    assert {date.fromisoformat(e.iso) for e in dates.examples("test", 5000)} <= test


#: The same formats as strptime patterns, written independently of dates.FORMATS: ordinals and the
#: apostrophe are removed before parsing; %y is parsed by strptime and re-pivoted at 50 below.
STRPTIME = {
    "iso": "%Y-%m-%d", "ymd-slash": "%Y/%m/%d", "compact": "%Y%m%d", "us": "%m/%d/%Y", "us-short": "%m/%d/%Y",
    "us-yy": "%m/%d/%y", "eu": "%d.%m.%Y", "eu-short": "%d.%m.%Y", "eu-yy": "%d.%m.%y", "month-day": "%B %d, %Y",
    "mon-day": "%b %d, %Y", "month-ord": "%B %d, %Y", "day-month": "%d %B %Y", "day-mon": "%d %b %Y",
    "day-mon-yy": "%d %b %y", "oracle": "%d-%b-%Y", "ord-month": "%d %B %Y", "ord-of": "%d of %B %Y",
    "the-ord-of": "the %d of %B %Y", "the-ord-of-comma": "the %d of %B, %Y", "weekday-ord-of": "%A, %d of %B %Y",
    "weekday-the-ord": "%A the %d of %B %Y", "weekday-month-day": "%A, %B %d, %Y",
    "weekday-day-month": "%A %d %B %Y", "rfc": "%a, %d %b %Y", "wkd-mon-day": "%a, %b %d, %Y",
    "mon-day-apostrophe": "%b %d %y", "year-month-day": "%Y %B %d",
}


def test_every_target_is_the_valid_iso_date_of_its_source():
    assert set(STRPTIME) == set(dates.FORMATS)
    for split in dates.SPLITS:
        for e in dates.examples(split, 3000):
            assert dates.parse_iso(e.iso) is not None and len(e.iso) == LENGTH
            text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", e.text, flags=re.IGNORECASE).replace("'", "")
            parsed = datetime.strptime(text, STRPTIME[e.format]).date()  # names match in any case
            if "%y" in STRPTIME[e.format]:  # strptime pivots at 69; the dataset at 50
                parsed = parsed.replace(year=(1900 if parsed.year % 100 >= 50 else 2000) + parsed.year % 100)
            assert parsed.isoformat() == e.iso, e
            if e.format.startswith(("weekday", "rfc", "wkd")):  # strptime ignores the weekday: check it
                assert e.text.split()[0].strip(",").lower() in {
                    dates.DAYS[parsed.weekday()].lower(), dates.DAY_ABBR[parsed.weekday()].lower()}, e


def test_formats_lengths_cases_and_alphabet():
    examples = dates.examples("test", 5000)
    assert {e.format for e in examples} == set(dates.FORMATS)
    lengths = [len(e.text) for e in examples]
    assert min(lengths) == 6 and max(lengths) <= dates.longest_input() == 36 and len(set(lengths)) >= 28
    words = [e.text for e in examples if dates.has_words(dates.FORMATS[e.format])]
    assert any(t.islower() for t in words) and any(t.isupper() for t in words) and any(t.istitle() for t in words)
    assert set("".join(e.text for e in examples)) <= set(dates.alphabet())
    assert [dates.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 30, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "30th", "31st"]
    assert dates.render(date(1987, 3, 3), dates.FORMATS["weekday-ord-of"]) == "Tuesday, 3rd of March 1987"


def test_inputs_outside_the_alphabet_and_the_teacher_forcing_shift():
    alphabet = dates.alphabet()
    assert clean("  3 févr.   2001! ", alphabet) == ("3 fevr. 2001", "!")  # accents stripped, the rest dropped
    assert clean("€€ ¿?", alphabet) == ("", "€¿?") and clean("3 ! 2001", alphabet) == ("3 2001", "!")
    examples = dates.examples("val", 5)
    (encoder, decoder), target = encode_pairs(examples, alphabet, 36)
    assert encoder.shape == (5, 36) and decoder.shape == target.shape == (5, LENGTH)
    assert (decoder[:, 0] == len(OUTPUT_CHARS)).all() and (decoder[:, 1:] == target[:, :-1]).all()
    assert [decode(row) for row in target] == [e.iso for e in examples]
    assert all((row[len(e.text):] == 0).all() and (row[:len(e.text)] > 0).all() for row, e in zip(encoder, examples))


# -- training, the decoder and predict on every backend ------------------------------------------------------
def check(out: Path, backend: str, *others: str) -> dict:
    # every process here starts outside the repository (cwd=out): a stale dlkit.egg-info left in its root
    # by an older `pip install` would otherwise shadow the installed entry points (and hide seq2seq)
    return run_check(SCRIPT, out / backend, *PLAN[backend], *others, backend=backend, timeout=600, cwd=out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq2seq")
    with ThreadPoolExecutor(2) as pool:
        first = {b: pool.submit(check, out, b) for b in ("tensorflow", "jax")}
        found = {b: f.result() for b, f in first.items()}
        tf_run, jax_run = found["tensorflow"]["run"], found["jax"]["run"]
        torch = pool.submit(check, out, "torch", tf_run, jax_run)
        cli = pool.submit(run_cli, "predict", tf_run, "the 3rd of march 1987", "MARCH 3, 1987", "--backend", "jax",
                          "--json", "--plot", str(out / "cli.png"), env=ONE_THREAD, cwd=out)
        found["torch"], found["cli"], found["cli_plot"] = torch.result(), cli.result(), out / "cli.png"
    return found


@pytest.mark.e2e
@pytest.mark.parametrize("backend", list(PLAN))
def test_a_tiny_run_trains_on_every_backend(runs, backend):
    found = runs[backend]
    metrics, test = found["metrics"], found["metrics"]["test"]
    assert metrics["status"] == "completed" and metrics["backend"] == backend and metrics["epochs_completed"] == 3
    assert metrics["headline"]["metric"] == "exact_match" and 0 <= test["exact_match"] <= 1
    history = (Path(found["run"]) / "history.csv").read_text().splitlines()
    losses = [float(row.split(",")[2]) for row in history[1:]]
    assert losses[-1] < losses[0] - 0.3, losses  # it learns: the loss falls from the uniform guess's
    assert test["char_accuracy"] > 0.3           # above always writing the dashes (0.2)
    assert sum(b["count"] for b in test["exact_match_by_length"].values()) == test["test_samples"] == 128
    assert set(test["exact_match_by_format"]) <= set(dates.FORMATS)
    assert ("attention.png" in found["plots"]) == (PLAN[backend][0] != "none")
    vocab = json.loads((Path(found["run"]) / "artifacts" / "vocab.json").read_text())
    assert vocab["input_chars"] == dates.alphabet() and vocab["output_chars"] == OUTPUT_CHARS


@pytest.mark.e2e
@pytest.mark.parametrize("backend", list(PLAN))
def test_attention_sums_to_one_ignores_padding_and_greedy_matches_teacher_forcing(runs, backend):
    checks = runs[backend]["checks"]
    if PLAN[backend][0] == "none":
        assert checks["attention_max"] == 0.0  # no attention: nothing to plot, all zeros
    else:
        assert checks["attention_sum_error"] < 1e-5
        assert checks["attention_max"] > 1 / 36  # not uniform over the padded width
    assert checks["attention_on_padding"] == 0.0 and checks["attention_on_extra_padding"] == 0.0
    assert checks["extra_padding_changes"] < 1e-5 and checks["extra_padding_same_ids"]
    assert checks["teacher_forced_argmax_equal"] and checks["teacher_forced_probability_gap"] < 1e-4


@pytest.mark.e2e
@pytest.mark.parametrize("trained_on", ["tensorflow", "jax"])
def test_predict_and_evaluate_on_pytorch_a_run_trained_elsewhere(runs, trained_on):
    run = runs[trained_on]["run"]
    predicted = runs["torch"]["predicted"][run]
    results = predicted["results"]
    assert len(results) == 5 and all(len(r["output"]) == LENGTH and set(r["output"]) <= set(OUTPUT_CHARS)
                                      for r in results)
    assert all(isinstance(r["valid"], bool) and 0 < r["confidence"] <= 1 for r in results)
    assert results[3]["ignored"] == "!" and "ignored" not in results[0]  # 'févr.' kept as 'fevr.', '!' dropped
    assert predicted["plot_bytes"] > 10_000
    evaluated = runs["torch"]["evaluated"][run]
    assert evaluated["backend"] == "torch"
    # the same weights on another backend: at most one of 128 greedy decodings may flip on float rounding
    assert abs(evaluated["test"]["exact_match"] - evaluated["recorded"]["exact_match"]) <= 1 / 128
    assert abs(evaluated["test"]["char_accuracy"] - evaluated["recorded"]["char_accuracy"]) <= 1 / 128


@pytest.mark.e2e
def test_dlkit_predict_prints_json_and_writes_the_heatmap(runs):
    proc = runs["cli"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert [r["input"] for r in results] == ["the 3rd of march 1987", "MARCH 3, 1987"]
    assert all(len(r["output"]) == LENGTH and "valid" in r and "confidence" in r for r in results)
    assert runs["cli_plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
def test_bad_predict_input_is_one_line(runs):
    for text in ("", "   "):
        proc = run_cli("predict", runs["tensorflow"]["run"], text, cwd=Path(runs["tensorflow"]["run"]))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "input 1 is empty" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    refused = runs["torch"]["refused"]
    assert refused["unknown_only"].startswith("input 1 ('€€ ¿?') has no character the model knows")
    assert refused["plot_without_attention"].endswith("was trained with --attention none: it has no attention to plot")
