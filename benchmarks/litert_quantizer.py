"""litert-quantizer (post-conversion static int8) against the TFLite converter's own int8, on one export.

litert-quantizer pins its own ai-edge-litert and is not a dlkit dependency, so it lives in a venv of
its own; this script (run with dlkit's Python) calls it there and verifies both files the same way
`dlkit export` does: LiteRT interpreter, the full test set, size, gzip size, latency.

    python3 -m venv /tmp/lqvenv && /tmp/lqvenv/bin/pip install litert-quantizer
    KERAS_HOME=.dlkit-cache/keras python benchmarks/litert_quantizer.py EXPORT_DIR --venv /tmp/lqvenv

EXPORT_DIR is a `dlkit export … --quantize int8` folder (it holds ALGO_float32.tflite and ALGO_int8.tflite).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

QUANTIZE = r"""
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
from litert_quantizer import quantizer, recipe
src, calibration_npz, dst = sys.argv[1:4]
signatures = Interpreter(model_path=src).get_signature_list()
key = next(iter(signatures)); name = signatures[key]["inputs"][0]
x = np.load(calibration_npz)["x"]
qt = quantizer.Quantizer(src)
qt.load_quantization_recipe(recipe.static_wi8_ai8())
calibration = qt.calibrate({key: [{name: x[i:i + 1]} for i in range(len(x))]}, num_threads=2)
qt.quantize(calibration, enable_progress_bar=False).export_model(dst, overwrite=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--venv", type=Path, required=True, help="a venv with litert-quantizer installed")
    args = parser.parse_args()

    from dlkit import backends
    from dlkit.edge import convert, verify
    from dlkit.runs import Run
    from dlkit.training import call_hook, prepare, run_plugin

    report = json.loads((args.export_dir / "export_report.json").read_text())
    entry, cfg = run_plugin(Run(Path(report["run"])))
    backends.activate("tensorflow")
    data = prepare(call_hook(entry, entry.algorithm(), "load_data", cfg), cfg)
    float32 = args.export_dir / f"{entry.name}_float32.tflite"
    files = {"tflite converter int8": args.export_dir / f"{entry.name}_int8.tflite", "float32": float32}
    with tempfile.TemporaryDirectory() as tmp:
        import numpy as np

        # the same 300 calibration images `dlkit export` draws (edge/convert.py: representative)
        np.savez(Path(tmp) / "calibration.npz",
                 x=np.concatenate([batch[0] for batch in convert.representative(data.x_train)()]))
        out = Path(tmp) / f"{entry.name}_int8_litert_quantizer.tflite"
        subprocess.run([str(args.venv / "bin" / "python"), "-c", QUANTIZE, str(float32),
                        str(Path(tmp) / "calibration.npz"), str(out)], check=True, capture_output=True)
        files["litert-quantizer static_wi8_ai8"] = out
        print("| file | accuracy | size KiB | gzip KiB | latency ms |\n|---|---|---|---|---|")
        for label, path in files.items():
            print(f"| {label} | {100 * verify.accuracy(path, data.x_test, data.y_test):.2f}% | "
                  f"{path.stat().st_size / 1024:.1f} | {verify.gzip_size(path) / 1024:.1f} | "
                  f"{verify.latency_ms(path, data.x_test[0], runs=200):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
