"""How fast MgfDataset indexes an MGF file and serves preprocessed spectra.

    python -m benchmarks.mgf_read [--copies 50] [--out results/benchmarks/mgf_read.json]

Builds a larger file by repeating the 128 spectra of tests/data/sample_preprocessed_spectra.mgf
``--copies`` times, then times: the construction (the BEGIN IONS scan plus one parse of every block
to keep the usable spectra), a full pass of ``dataset[i]`` in order and in a seeded random order,
and, to show where the time goes, pyteomics' parse alone and ``preprocess`` alone. Prints the figures
and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from model.mgf import MgfDataset, PreprocessConfig, preprocess

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sample_preprocessed_spectra.mgf"


def _best_of(repeats: int, run) -> float:
    """Shortest wall time of ``repeats`` calls of ``run()``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=50, help="times the sample file is repeated")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step; the best is kept")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "mgf_read.json")
    args = parser.parse_args()

    text = SAMPLE.read_text()
    cfg = PreprocessConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.mgf"
        path.write_text(text * args.copies)
        size_mb = path.stat().st_size / 1e6

        build_s = _best_of(args.repeats, lambda: MgfDataset(path, cfg).close())
        dataset = MgfDataset(path, cfg)
        n = len(dataset)
        order = np.random.default_rng(0).permutation(n).tolist()
        sequential_s = _best_of(args.repeats, lambda: [dataset[i] for i in range(n)])
        random_s = _best_of(args.repeats, lambda: [dataset[i] for i in order])

        reader = dataset._reader(0)
        raw = [reader.get_by_index(k) for k in range(n)]
        parse_s = _best_of(args.repeats, lambda: [reader.get_by_index(k) for k in range(n)])
        prep_s = _best_of(
            args.repeats,
            lambda: [
                preprocess(
                    r["m/z array"], r["intensity array"], dataset.precursor_mz[k], int(dataset.charge[k]), cfg
                )
                for k, r in enumerate(raw)
            ],
        )
        peaks = float(np.mean([r["m/z array"].size for r in raw]))
        dataset.close()

    figures = {
        "spectra": n,
        "file_mb": round(size_mb, 2),
        "raw_peaks_per_spectrum": round(peaks, 1),
        "build_s": round(build_s, 4),
        "build_spectra_per_s": round(n / build_s),
        "build_mb_per_s": round(size_mb / build_s, 1),
        "getitem_sequential_spectra_per_s": round(n / sequential_s),
        "getitem_random_spectra_per_s": round(n / random_s),
        "pyteomics_parse_spectra_per_s": round(n / parse_s),
        "preprocess_spectra_per_s": round(n / prep_s),
        "repeats": args.repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }
    for key, value in figures.items():
        print(f"{key:36s} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
