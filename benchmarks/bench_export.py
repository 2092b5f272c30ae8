"""Export the default model and check issue 3's targets: time, int8 accuracy, agreement, size.

    python benchmarks/bench_export.py [--run runs/bench/train/run] [--repeats 3]

Exports RUN `--repeats` times (versions 1..R of a fresh base path under OUT), prints
the median export time and the int8-vs-float figures from the manifest, and writes
OUT/bench_export.json. Targets: int8 test accuracy within 0.3 pp of float, top-1
agreement >= 99.5%, int8 file <= 30% of the float TFLite file, export < 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fmnist.export.config import ExportConfig
from fmnist.export.export import export_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/bench/train/run"))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/export"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    base = args.out / "models"
    shutil.rmtree(base, ignore_errors=True)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = export_run(args.run, ExportConfig(base_path=base, data_dir=args.data_dir))
        seconds.append(time.perf_counter() - start)
    data = result.manifest.data
    int8, float32 = data["tflite"]["int8"], data["tflite"]["float32"]
    size = {kind: data["files"][entry["file"]]["bytes"] for kind, entry in data["tflite"].items()}
    row = {
        "export_s_median": statistics.median(seconds),
        "export_s": seconds,
        "stage_s": result.timings,
        "float_accuracy": data["float_metrics"]["accuracy"],
        "int8_accuracy": int8["metrics"]["accuracy"],
        "int8_drop_pp": int8["parity"]["accuracy_drop_pp"],
        "int8_agreement": int8["parity"]["agreement"],
        "float32_tflite_agreement": float32["parity"]["agreement"],
        "int8_bytes": size["int8"],
        "float32_bytes": size["float32"],
        "int8_size_ratio": size["int8"] / size["float32"],
        "saved_model_max_abs_diff": data["saved_model"]["max_abs_diff_vs_keras"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_export.json").write_text(json.dumps(row, indent=2) + "\n")
    checks = [
        ("export time (median)", f"{row['export_s_median']:.1f} s", row["export_s_median"] < 60),
        ("float test accuracy", f"{row['float_accuracy']:.4f}", True),
        ("int8 test accuracy", f"{row['int8_accuracy']:.4f}", True),
        ("int8 drop", f"{row['int8_drop_pp']:+.2f} pp", row["int8_drop_pp"] <= 0.3),
        ("int8 top-1 agreement", f"{row['int8_agreement']:.4f}", row["int8_agreement"] >= 0.995),
        ("int8 / float32 size", f"{row['int8_size_ratio']:.1%}", row["int8_size_ratio"] <= 0.3),
    ]
    for name, value, ok in checks:
        print(f"{name:<22} {value:>12}  {'ok' if ok else 'MISSED'}")
    print(f"wrote {args.out / 'bench_export.json'}")


if __name__ == "__main__":
    main()
