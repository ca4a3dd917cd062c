"""Benchmark for issue 3: MobileNet through the edge pipeline, and ResNet-20 per backend.

Runs the real CLI (``python -m dlkit``) in fresh processes, so what it measures is what a user gets::

    KERAS_HOME=.dlkit-cache/keras nice python benchmarks/edge.py            # ≈ 30 min on 2 CPU cores
    python benchmarks/edge.py --quick                                       # a smoke run, minutes

Writes benchmarks/out/edge/results.json and prints a Markdown summary for benchmarks/RESULTS.md.
Timings on a shared machine are noisy: compare figures only within one run of this script.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "edge"


def dlkit(*args: str) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dlkit", *args], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    text = done.stdout + done.stderr
    (OUT / "log.txt").open("a").write(f"\n$ dlkit {' '.join(args)}  ({seconds:.0f} s, exit {done.returncode})\n"
                                      + done.stdout[-4000:] + done.stderr[-2000:])
    return text, seconds


def last_run(algorithm: str) -> Path:
    runs = sorted((OUT / "runs" / algorithm).glob("*"), key=lambda p: p.stat().st_mtime)
    return runs[-1]


def train(algorithm: str, *options: str) -> dict:
    _, seconds = dlkit("train", algorithm, "--out", str(OUT / "runs"), *options)
    run = last_run(algorithm)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"run": str(run.relative_to(ROOT)), "command": f"dlkit train {algorithm} {' '.join(options)}",
            "accuracy": metrics.get("test", {}).get("accuracy"), "backend": metrics.get("backend"),
            "seconds_per_epoch": metrics.get("seconds_per_epoch"), "status": metrics.get("status"),
            "train_samples": metrics.get("train_samples"), "test_samples": metrics.get("test_samples"),
            "wall_s": round(seconds, 1)}


def export(run: str, name: str, *options: str) -> dict:
    out = OUT / name
    text, seconds = dlkit("export", run, "--tflite", "--out", str(out), *options)
    report = json.loads((out / "export_report.json").read_text()) if (out / "export_report.json").exists() else {}
    return {"command": f"dlkit export {run} --tflite {' '.join(options)}", "wall_s": round(seconds, 1),
            "variants": report.get("variants", []), "error": None if report else text.strip().splitlines()[-1:]}


def size_by_variant(quick: bool) -> dict:
    """int8/float32 file size per MobileNet variant: what the per-channel quantization parameters cost.

    Each variant is trained briefly (2,000 images, 1 epoch: the size of a file does not depend on how
    well it was trained) and exported through the real pipeline.
    """
    found = {}
    variants = [("v1", "1.0"), ("v2", "0.5")] if quick else \
        [("v1", "1.0"), ("v1", "0.5"), ("v2", "1.0"), ("v2", "0.5"), ("v3small", "1.0")]
    for variant, alpha in variants:
        run = train("mobilenet", "--variant", variant, "--alpha", alpha, "--train-samples", "2000", "--epochs", "1",
                    "--test-samples", "500")
        exported = export(run["run"], f"sizes/{variant}-{alpha}", "--quantize", "int8", "--test-samples", "500",
                          "--latency-runs", "20")
        sizes = {v["variant"]: v["size"] for v in exported["variants"] if v.get("size")}
        found[f"{variant} α{alpha}"] = {"float32": sizes.get("float32"), "int8": sizes.get("int8"),
                                        "ratio": round(sizes["int8"] / sizes["float32"], 3)
                                        if sizes.get("int8") and sizes.get("float32") else None}
    return found


def latency_modes(folder: Path) -> dict:
    """The same files under three interpreter set-ups: why int8 can be slower than float (edge/README.md)."""
    from dlkit.edge import verify
    import numpy as np

    sample = np.random.default_rng(0).random((28, 28, 1), dtype=np.float32)
    found = {}
    for path in sorted(folder.glob("*.tflite")):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        def timed(**kwargs):
            import statistics

            with verify._quiet_stderr():
                interp = Interpreter(model_path=str(path), num_threads=1, **kwargs)
            interp.allocate_tensors()
            detail = interp.get_input_details()[0]
            interp.set_tensor(detail["index"], sample[None].astype(detail["dtype"]))
            for _ in range(20):
                interp.invoke()
            times = []
            for _ in range(300):
                start = time.perf_counter()
                interp.invoke()
                times.append(time.perf_counter() - start)
            return round(1000 * statistics.median(times), 4)

        found[path.name] = {"xnnpack_default": timed(),
                            "xnnpack_latest_features": timed(experimental_default_delegate_latest_features=True),
                            "no_xnnpack": timed(experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)}
    return found


def markdown(results: dict) -> str:
    """The figures as Markdown tables (pasted into benchmarks/RESULTS.md)."""
    lines = []
    for key in ("mobilenet_dense", "mobilenet_pruned50", "mobilenet_pruned50_block4", "resnet20_export"):
        part = results.get(key)
        if not part:
            continue
        lines += [f"`{part['command']}` ({part['wall_s']:.0f} s wall)", "",
                  "| variant | accuracy | size KiB | gzip KiB | sparsity | latency ms | status |", "|---|---|---|---|---|---|---|"]
        for v in part["variants"]:
            def f(value, scale=1.0, digits=2, pct=False):
                return "—" if value is None else (f"{100 * value:.{digits}f}%" if pct else f"{value / scale:.{digits}f}")
            lines.append(f"| {v['variant']} | {f(v['accuracy'], pct=True)} | {f(v['size'], 1024, 1)} | "
                         f"{f(v['gzip_size'], 1024, 1)} | {f(v['sparsity'], pct=True, digits=1)} | "
                         f"{f(v['latency_ms'], digits=3)} | {v['status']} |")
        lines.append("")
    if results.get("mobilenet_int8_size_by_variant"):
        lines += ["| MobileNet | float32 KiB | int8 KiB | int8 / float32 |", "|---|---|---|---|"]
        for name, v in results["mobilenet_int8_size_by_variant"].items():
            lines.append(f"| {name} | {v['float32'] / 1024:.1f} | {v['int8'] / 1024:.1f} | {v['ratio']:.3f} |")
        lines.append("")
    if results.get("latency_modes"):
        lines += ["| file | XNNPACK default ms | XNNPACK latest features ms | no XNNPACK ms |", "|---|---|---|---|"]
        for name, t in results["latency_modes"].items():
            lines.append(f"| {name} | {t['xnnpack_default']:.3f} | {t['xnnpack_latest_features']:.3f} | "
                         f"{t['no_xnnpack']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the script, not the numbers")
    parser.add_argument("--markdown", action="store_true", help="print the tables of the last results and exit")
    parser.add_argument("--mobilenet-run", default="", help="export this trained run instead of training one")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: mobilenet,sizes,resnet,backends")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads((OUT / "results.json").read_text())))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    skip = set(args.skip.split(","))
    n_train, epochs, n_test = ("1500", "1", "500") if args.quick else ("0", "3", "0")  # 0: the whole set
    results: dict = {"quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = OUT / "results.json"
    if path.exists():  # parts skipped this time keep their earlier figures
        results = {**json.loads(path.read_text()), **results}

    def save():
        path.write_text(json.dumps(results, indent=2) + "\n")

    if "mobilenet" not in skip:
        if not args.mobilenet_run:
            results["mobilenet_train"] = train("mobilenet", "--train-samples", n_train, "--epochs", epochs,
                                               "--test-samples", n_test)
        mobile = {"run": args.mobilenet_run or results["mobilenet_train"]["run"]}
        save()
        results["mobilenet_dense"] = export(mobile["run"], "mobilenet_dense", "--quantize", "all", "--qat")
        results["latency_modes"] = latency_modes(OUT / "mobilenet_dense")
        save()
        results["mobilenet_pruned50"] = export(mobile["run"], "mobilenet_pruned50", "--quantize", "int8",
                                               "--prune", "0.5", "--fine-tune-epochs", "2")
        save()
        results["mobilenet_pruned50_block4"] = export(mobile["run"], "mobilenet_pruned50_block4", "--quantize",
                                                      "int8", "--prune", "0.5", "--block", "4",
                                                      "--fine-tune-epochs", "2")
        save()
    if "sizes" not in skip:
        results["mobilenet_int8_size_by_variant"] = size_by_variant(args.quick)
        save()
    if "resnet" not in skip:
        r_train, r_epochs = ("1000", "1") if args.quick else ("8000", "3")
        resnet = train("resnet", "--data", "fashion_mnist", "--train-samples", r_train, "--epochs", r_epochs,
                       "--test-samples", n_test)
        results["resnet20_fashion_mnist"] = resnet
        results["resnet20_export"] = export(resnet["run"], "resnet20_int8", "--quantize", "int8")
        save()
    if "backends" not in skip:
        results["resnet20_backends"] = {
            backend: train("resnet", "--backend", backend, "--data", "fashion_mnist", "--train-samples", "2000",
                           "--epochs", "2", "--test-samples", "1000", "--batch-size", "128")
            for backend in ("tensorflow", "jax", "torch")}
        save()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
