"""Human-written dates and their ISO 8601 form: the generated dataset ``dates`` of the seq2seq plugin.

Every calendar day from 1950-01-01 to 2049-12-31 (36,525 days, from Python's ``datetime`` and
``calendar``) is written in one of the formats below ("Tuesday, 3rd of March 1987", "3/3/87",
"March 3, 1987", "03.03.1987", …) and paired with its ISO form ("1987-03-03"). The input lengths run
from 6 characters ("3/3/87") to 36 ("Wednesday the 30th of September 2015").

The days are split once, with a fixed seed, into 80% training days, 10% validation days and 10% test
days, so no test date ever appears in training, in any format. Each split's examples are drawn from
its own days with a seeded generator of its own: the test set for a given size is the same whatever
the training set's size is.

Conventions where human dates are ambiguous (the model learns them from the data):

- numbers with slashes are month/day/year (US: 3/4/87 is March 4th); with dots, day.month.year
  (European: 3.4.87 is April 3rd); a four-digit year first is always year/month/day;
- two-digit years pivot at 50: 50–99 are 1950–1999, 00–49 are 2000–2049 (the span of the data);
- words are English (Python's ``calendar`` names in the C locale), in Title, lower or UPPER case.

Standard library only: ``dlkit list`` imports this module through the plugin.
"""
from __future__ import annotations

import calendar
import random
from datetime import date, timedelta
from typing import NamedTuple

FIRST, LAST = date(1950, 1, 1), date(2049, 12, 31)
DATA_SEED = 20150901  # the dataset is the same whatever --seed says: runs compare on one test set
SPLITS = ("train", "val", "test")
DAY_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
# Python's calendar names follow LC_TIME, which Python leaves at "C" (English) unless a program changes it
MONTHS = tuple(calendar.month_name)[1:]
MONTH_ABBR = tuple(calendar.month_abbr)[1:]
DAYS = tuple(calendar.day_name)
DAY_ABBR = tuple(calendar.day_abbr)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, …, 21st, 22nd, 23rd, …, 31st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fields(d: date) -> dict[str, str]:
    return {"Y": f"{d.year:04d}", "y": f"{d.year % 100:02d}", "m": f"{d.month:02d}", "-m": str(d.month),
            "d": f"{d.day:02d}", "-d": str(d.day), "o": ordinal(d.day), "B": MONTHS[d.month - 1],
            "b": MONTH_ABBR[d.month - 1], "A": DAYS[d.weekday()], "a": DAY_ABBR[d.weekday()]}


#: name → template; {X} are the fields above (strftime's letters; {-d} is the day without a leading zero,
#: {o} the ordinal day). Formats with words are also written in lower and UPPER case.
FORMATS: dict[str, str] = {
    "iso": "{Y}-{m}-{d}",                              # 1987-03-03
    "ymd-slash": "{Y}/{m}/{d}",                        # 1987/03/03
    "compact": "{Y}{m}{d}",                            # 19870303
    "us": "{m}/{d}/{Y}",                               # 03/03/1987
    "us-short": "{-m}/{-d}/{Y}",                       # 3/3/1987
    "us-yy": "{-m}/{-d}/{y}",                          # 3/3/87
    "eu": "{d}.{m}.{Y}",                               # 03.03.1987
    "eu-short": "{-d}.{-m}.{Y}",                       # 3.3.1987
    "eu-yy": "{d}.{m}.{y}",                            # 03.03.87
    "month-day": "{B} {-d}, {Y}",                      # March 3, 1987
    "mon-day": "{b} {-d}, {Y}",                        # Mar 3, 1987
    "month-ord": "{B} {o}, {Y}",                       # March 3rd, 1987
    "day-month": "{-d} {B} {Y}",                       # 3 March 1987
    "day-mon": "{-d} {b} {Y}",                         # 3 Mar 1987
    "day-mon-yy": "{-d} {b} {y}",                      # 3 Mar 87
    "oracle": "{d}-{b}-{Y}",                           # 03-Mar-1987
    "ord-month": "{o} {B} {Y}",                        # 3rd March 1987
    "ord-of": "{o} of {B} {Y}",                        # 3rd of March 1987
    "the-ord-of": "the {o} of {B} {Y}",                # the 3rd of March 1987
    "the-ord-of-comma": "the {o} of {B}, {Y}",         # the 3rd of March, 1987
    "weekday-ord-of": "{A}, {o} of {B} {Y}",           # Tuesday, 3rd of March 1987
    "weekday-the-ord": "{A} the {o} of {B} {Y}",       # Tuesday the 3rd of March 1987
    "weekday-month-day": "{A}, {B} {-d}, {Y}",         # Tuesday, March 3, 1987
    "weekday-day-month": "{A} {-d} {B} {Y}",           # Tuesday 3 March 1987
    "rfc": "{a}, {-d} {b} {Y}",                        # Tue, 3 Mar 1987
    "wkd-mon-day": "{a}, {b} {-d}, {Y}",               # Tue, Mar 3, 1987
    "mon-day-apostrophe": "{b} {-d} '{y}",             # Mar 3 '87
    "year-month-day": "{Y} {B} {-d}",                  # 1987 March 3
}


def render(d: date, template: str, case: str = "title") -> str:
    """``d`` written with ``template`` (a value of FORMATS), in "title", "lower" or "upper" case."""
    text = template.format_map(_fields(d))
    return {"title": text, "lower": text.lower(), "upper": text.upper()}[case]


def has_words(template: str) -> bool:
    return any(field in template for field in ("{B}", "{b}", "{A}", "{a}", "{o}", "the", "of"))


def all_days() -> list[date]:
    return [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]


def split_days(seed: int = DATA_SEED) -> dict[str, list[date]]:
    """The days of each split: a seeded shuffle of every day, cut 80/10/10. Disjoint by construction."""
    days = all_days()
    random.Random(seed).shuffle(days)
    n_train = round(len(days) * DAY_FRACTIONS["train"])
    n_val = round(len(days) * DAY_FRACTIONS["val"])
    return {"train": days[:n_train], "val": days[n_train:n_train + n_val], "test": days[n_train + n_val:]}


class Example(NamedTuple):
    text: str       # "Tuesday, 3rd of March 1987"
    iso: str        # "1987-03-03"
    format: str     # "weekday-ord-of"


def examples(split: str, count: int, seed: int = DATA_SEED) -> list[Example]:
    """``count`` examples of ``split``: a random day of the split, a random format, a random case.

    Each split draws from its own generator, so its examples do not depend on the other splits' sizes;
    a day may appear more than once (in different formats) when ``count`` exceeds the split's days.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    days = split_days(seed)[split]
    rng = random.Random(seed * 10 + SPLITS.index(split))
    names = list(FORMATS)
    out = []
    for _ in range(count):
        d, name = rng.choice(days), rng.choice(names)
        case = rng.choices(("title", "lower", "upper"), weights=(5, 3, 2))[0] if has_words(FORMATS[name]) else "title"
        out.append(Example(render(d, FORMATS[name], case), d.isoformat(), name))
    return out


def alphabet() -> str:
    """Every character a format can produce, sorted: the input vocabulary of a model trained on ``dates``."""
    chars: set[str] = set("0123456789")
    words = [*MONTHS, *MONTH_ABBR, *DAYS, *DAY_ABBR, "st", "nd", "rd", "th", "the", "of"]
    for word in words:
        chars |= set(word) | set(word.lower()) | set(word.upper())
    for template in FORMATS.values():  # separators: everything outside the {fields}
        chars |= set(template.format_map({k: "" for k in _fields(FIRST)}))
    return "".join(sorted(chars))


def longest_input() -> int:
    """The longest text any format makes of any day (a bound: the longest names in the longest format)."""
    longest = {"Y": "0000", "y": "00", "m": "00", "-m": "00", "d": "00", "-d": "00", "o": "00th",
               "B": max(MONTHS, key=len), "b": max(MONTH_ABBR, key=len), "A": max(DAYS, key=len),
               "a": max(DAY_ABBR, key=len)}
    return max(len(t.format_map(longest)) for t in FORMATS.values())


def parse_iso(text: str) -> date | None:
    """The date ``text`` names if it is a valid ISO 8601 calendar date (YYYY-MM-DD), else None."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None

