"""The export report: one row per variant, printed as a table and written as JSON and Markdown."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from dlkit.files import write_json, write_text

OK, OFF, FAILED = "✅", "❎", "❌"
LEGEND = (f"{OK} exported and verified · {OFF} exported but accuracy off by more than the tolerance "
          f"(file moved to rejected/) · {FAILED} failed")


@dataclass
class Row:
    variant: str
    file: str = ""
    accuracy: float | None = None
    reference: str = ""            # the Keras model the accuracy is compared with
    size: int | None = None
    gzip_size: int | None = None
    sparsity: float | None = None
    latency_ms: float | None = None
    status: str = OK
    note: str = ""
    extra: dict = field(default_factory=dict)


def _fmt(value, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "bytes":
        return f"{value / 1024:.1f} KiB"
    if kind == "ms":
        return f"{value:.3f}"
    return str(value)


HEADER = ("variant", "accuracy", "size", "gzip", "sparsity", "latency ms", "status", "note")


def table_rows(rows: list[Row]) -> list[tuple[str, ...]]:
    return [(r.variant, _fmt(r.accuracy, "pct"), _fmt(r.size, "bytes"), _fmt(r.gzip_size, "bytes"),
             _fmt(r.sparsity, "pct"), _fmt(r.latency_ms, "ms"), r.status, r.note) for r in rows]


def text_table(rows: list[Row]) -> str:
    cells = [HEADER, *table_rows(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def markdown(meta: dict, rows: list[Row]) -> str:
    lines = [f"# Export report: {meta['algorithm']} ({meta['run']})", "",
             f"Test set: {meta['test_samples']} examples of {meta['dataset']}; tolerance {meta['tolerance']} pt "
             f"below the Keras model each variant was converted from; latency: median of {meta['latency_runs']} "
             f"invokes, batch 1, 1 thread, XNNPACK, on {meta['machine']}.", "",
             *([f"Input: {meta['input']}.", ""] if meta.get("input") else []),
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table_rows(rows)]
    return "\n".join(lines + ["", LEGEND, ""])


def write(folder: Path, meta: dict, rows: list[Row]) -> None:
    write_json(folder / "export_report.json", {**meta, "variants": [asdict(r) for r in rows]})
    write_text(folder / "export_report.md", markdown(meta, rows))
