"""Added parameters vs number of tasks (1 ... 1,000) for every method, on a T5 size's shapes.

Closed-form counts (``hyperprompt.model.params``, checked against module parameters in the tests).
Prints JSON (and a markdown table with --markdown) and writes a log-log plot.

    python benchmarks/param_scaling.py --size t5-base --plot docs/figures/param_scaling.png --markdown
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import hyperprompt.model  # noqa: E402,F401  (registers every method and its formula)
from hyperprompt.model.config import MethodConfig  # noqa: E402
from hyperprompt.model.params import ADDED_PARAMETER_FORMULAS, BackboneShape, added_parameters  # noqa: E402
from hyperprompt.model.presets import count_checkpoint_parameters, t5_config  # noqa: E402

TASK_COUNTS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="t5-base")
    parser.add_argument("--plot", default=None, help="write the plot to this PNG")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = parser.parse_args()

    backbone_config = t5_config(args.size)
    shape = BackboneShape.from_config(backbone_config)
    backbone = count_checkpoint_parameters(args.size)
    methods = [m for m in sorted(ADDED_PARAMETER_FORMULAS) if m != "mtl"]
    counts = {
        method: [added_parameters(MethodConfig.from_dict({"method": method, "task_names": [f"t{i}" for i in range(n)]}),
                                  shape) for n in TASK_COUNTS]
        for method in methods
    }
    report = {
        "benchmark": "param_scaling", "size": args.size, "backbone_parameters": backbone, "tasks": TASK_COUNTS,
        "added_parameters": counts,
        # growth from 1 to 1,000 tasks: 1000 means linear; far less means nearly independent of T
        "growth_1_to_1000": {m: c[-1] / c[0] for m, c in counts.items()},
        "per_task_parameters": {m: (c[-1] - c[-2]) / (TASK_COUNTS[-1] - TASK_COUNTS[-2]) for m, c in counts.items()},
    }
    print(json.dumps(report, indent=2))
    if args.markdown:
        print(f"\n| method | {' | '.join(f'T={n}' for n in (1, 8, 128, 1000))} |"
              " growth 1→1000 | per task |")
        print("|---|" + "---|" * 6)
        for method, c in counts.items():
            picks = [c[TASK_COUNTS.index(n)] for n in (1, 8, 128, 1000)]
            cells = " | ".join(f"{v / 1e6:.2f}M ({100 * v / backbone:.2f}%)" for v in picks)
            print(f"| {method} | {cells} | {report['growth_1_to_1000'][method]:.1f}x "
                  f"| {report['per_task_parameters'][method]:,.0f} |")
    if args.plot:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method, c in counts.items():
            ax.plot(TASK_COUNTS, [100 * v / backbone for v in c], marker="o", markersize=3, label=method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of tasks T")
        ax.set_ylabel(f"added parameters (% of {args.size})")
        ax.set_title(f"Added parameters vs tasks ({args.size} shapes, default settings)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
