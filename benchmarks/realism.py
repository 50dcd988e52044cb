"""How real synthetic spectra look: the realism statistics of a real annotated MGF file against the generator's.

    python -m benchmarks.realism --mgf /work/shared/data/sample_preprocessed_spectra.mgf
    python -m benchmarks.realism --mgf FILE --config base --n 2000 --min-length 7 --max-length 14 --noise-peaks 36

Reads the real file with the project's reader and preprocessing, generates ``--n`` synthetic spectra at the
hardest stage (``--min-length``..``--max-length`` residues, ``--noise-peaks`` noise peaks) and at the clean
7-10 stage with the config's data section (precursor charges: the real file's most common one unless
``--min-charge``/``--max-charge`` say otherwise, since doubly charged fragments count for 3+ precursors
only), passes them through the same preprocessing (``model.realism``),
and prints one table: medians (means for the label shares, pooled quartiles for intensities) per source,
and the hardest stage's difference from the real file. Writes the table as CSV and Markdown (``--out``).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

import torch

from model.config import load_config
from model.data import preprocess_config
from model.errors import InputError, OneLineParser, exit_on_input_error
from model.realism import ROWS, real_spectra, summarize, synthetic_spectra
from model.synthetic import REALISTIC_NOISE_PEAKS, generate, step_generator

BAR = 0.20  # the hardest stage should lie within this relative difference of the real file on every row


def synthetic_table(cfg, n: int, lo: int, hi: int, noise: int, seed: int) -> tuple[dict[str, float], float]:
    """The statistics of ``n`` synthetic spectra, and spectra generated per second (generation alone)."""
    batches, elapsed = [], 0.0
    for step, start in enumerate(range(0, n, 500)):
        gen = step_generator(seed, step, "cpu")
        began = time.perf_counter()
        batches.append(generate(min(500, n - start), lo, hi, noise, cfg.data, gen, "cpu", cfg.model.max_peaks))
        elapsed += time.perf_counter() - began
    spectra = [s for b in batches for s in synthetic_spectra(b, preprocess_config(cfg))]
    return summarize(spectra), n / elapsed


def render(columns: dict[str, dict[str, float]], hardest: str) -> tuple[list[list[str]], bool]:
    """Table rows (header first) and whether the hardest stage is within BAR of the real file everywhere."""
    header = ["statistic", "how", *columns, f"{hardest} vs real"]
    rows, ok = [header], True
    for row in (*ROWS,):
        real, synth = columns["real"][row.key], columns[hardest][row.key]
        diff = (synth - real) / real if real else float("inf")
        ok &= abs(diff) <= BAR
        cells = [f"{c[row.key]:.0f}" if row.key == "peaks" else f"{c[row.key]:.3f}" for c in columns.values()]
        rows.append([row.key, row.how, *cells, f"{diff:+.0%}"])
    rows.append(["spectra", "count", *(f"{c['spectra']:.0f}" for c in columns.values()), ""])
    return rows, ok


@exit_on_input_error
def main() -> None:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mgf", required=True, help="a real annotated MGF file")
    parser.add_argument("--config", default="base", help="preset or config YAML whose data section generates")
    parser.add_argument("--n", type=int, default=2000, help="synthetic spectra per stage")
    parser.add_argument("--min-length", type=int, default=7)
    parser.add_argument("--max-length", type=int, default=14)
    parser.add_argument("--noise-peaks", type=int, default=REALISTIC_NOISE_PEAKS)
    parser.add_argument("--min-charge", type=int, default=0, help="0: the real file's most common charge")
    parser.add_argument("--max-charge", type=int, default=0, help="0: the real file's most common charge")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/realism", help="writes OUT.csv and OUT.md")
    args = parser.parse_args()
    if args.n < 1:
        raise InputError("command line", "--n", f"must be >= 1, got {args.n}")
    if not 1 <= args.min_length <= args.max_length:
        raise InputError("command line", "--min-length", f"need 1 <= min <= max, got {args.min_length}..{args.max_length}")
    if args.noise_peaks < 0:
        raise InputError("command line", "--noise-peaks", f"must be >= 0, got {args.noise_peaks}")
    torch.set_num_threads(1)
    real = real_spectra(args.mgf, preprocess_config(load_config(args.config)))
    if not real:
        raise InputError(args.mgf, "SEQ", "no annotated spectra; the realism statistics need SEQ= lines")
    # Like with like: by default the synthetic spectra take the real file's most common precursor charge.
    common = Counter(s.charge for s in real).most_common(1)[0][0]
    cfg = load_config(args.config, {"data.min_charge": args.min_charge or common,
                                    "data.max_charge": args.max_charge or common})
    hardest = f"synthetic {args.min_length}-{args.max_length}, {args.noise_peaks} noise"
    columns = {"real": summarize(real)}
    columns[hardest], rate = synthetic_table(cfg, args.n, args.min_length, args.max_length, args.noise_peaks,
                                             args.seed)
    columns["synthetic clean 7-10"], _ = synthetic_table(cfg, args.n, 7, 10, 0, args.seed + 1)
    rows, ok = render(columns, hardest)

    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    print(f"real: {args.mgf}; synthetic: --config {args.config}, charges {cfg.data.min_charge}..{cfg.data.max_charge}")
    print("\n".join(lines))
    print(f"hardest stage within {BAR:.0%} of the real file on every row: {'yes' if ok else 'no'}")
    print(f"generator: {rate:,.0f} spectra/s at the hardest stage (batches of 500, 1 CPU thread)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    markdown = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    markdown += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    out.with_suffix(".md").write_text("\n".join(markdown) + "\n")
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
