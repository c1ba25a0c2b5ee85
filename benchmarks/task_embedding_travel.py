"""How far an added task's k_tau moved: its distance from the mean of the old tasks' k_tau (issue 15).

For a task added with its rows started at the mean of the old ones (a named HyperPrompt-Global, or a
described one with ``add-task --start mean``; k_tau = W_p e_tau + b_p is affine in e_tau, so the mean
description gives the mean k_tau), that distance is how far training moved k_tau. Printed next to the old
rows' mean norm, for scale.

    python benchmarks/task_embedding_travel.py runs/described-lr1e-3/added-lr0.001/family_count_f/*-embedding-16*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperprompt.training import load_run_checkpoint  # noqa: E402


def travel(model_dir: str | Path) -> dict[str, float]:
    """|k_new - mean(k_old)| and the old rows' mean |k| of the last task of a HyperPrompt-Global model."""
    hyperprompt = load_run_checkpoint(model_dir).model.hyperprompt
    with torch.no_grad():
        k = hyperprompt.task_embeddings(torch.arange(hyperprompt.config.num_tasks))  # [T, t']
    return {"distance": (k[-1] - k[:-1].mean(dim=0)).norm().item(), "old_norm": k[:-1].norm(dim=-1).mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="add-task output folders (holding final/ and results.json)")
    args = parser.parse_args()
    for run in map(Path, args.runs):
        settings = json.loads((run / "results.json").read_text())
        print(json.dumps({"run": str(run), "train": settings["train"], "start": settings.get("start"),
                          "lr": settings["lr"], **travel(run / "final")}))


if __name__ == "__main__":
    main()
