"""Where a HyperPrompt training step spends its time, next to plain T5: torch.profiler op tables.

For plain T5 and each method (same random-init backbone, same batch; see overhead.py), profiles
``--steps`` training steps (forward, backward, AdamW) and reports per operator the self time per step
(CPU, or CUDA kernel time on a GPU), the operators whose time grows most over plain T5, and the hyper-prompt
generator on its own (forward + backward of all layers' prompts for the batch's tasks) as a share of the
step. Prints JSON.

    python benchmarks/profile_step.py --threads 1                    # t5-small shape, batch 32, input 128
    python benchmarks/profile_step.py --size t5-base --input-length 512 --batch-size 2 --threads 1
    python benchmarks/profile_step.py --device cuda --bf16 --size t5-base --input-length 512 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import defaultdict

import torch
from overhead import add_shape_arguments, autocast, build_models, make_batch, synchronize, train_step
from torch.profiler import ProfilerActivity, profile


def op_times(model, optimizer, batch, args) -> dict[str, float]:
    """Self time per step of every operator, in ms (CUDA kernel time on a GPU, else CPU time)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            train_step(model, optimizer, batch, args)
    cuda = args.device.startswith("cuda")
    times: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        us = event.self_device_time_total if cuda else event.self_cpu_time_total
        if us > 0:
            times[event.key] += us / 1000 / args.steps
    return dict(times)


def generator_time(model, args) -> float | None:
    """ms of forward + backward of the hyper-prompt generator alone for ``--tasks`` tasks (all layers)."""
    generator = getattr(model, "hyperprompt", None)
    if generator is None:
        return None
    tasks = torch.arange(args.tasks, device=args.device)
    times = []
    for _ in range(args.steps + 1):
        synchronize(args.device)
        start = time.perf_counter()
        with autocast(args):
            tables = generator(tasks)
        sum(t.float().square().sum() for t in tables.values()).backward()
        synchronize(args.device)
        times.append(time.perf_counter() - start)
    generator.zero_grad(set_to_none=True)
    return 1000 * min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_arguments(parser)
    parser.add_argument("--methods", nargs="+", default=["hyperprompt-global"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=12, help="operators listed per model and in the growth table")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    args.sweep_prompt_lengths, args.clock = None, "wall"  # overhead.py options: one model per method, wall clock
    if args.threads:
        torch.set_num_threads(args.threads)

    models = build_models(args)
    batch = make_batch(args, models["t5"].base.config.vocab_size)
    report: dict = {
        "benchmark": "profile_step",
        "machine": {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
                    or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "settings": vars(args),
        "models": {},
    }
    tables = {}
    for name, model in models.items():
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        train_step(model, optimizer, batch, args)  # warm-up
        tables[name] = op_times(model, optimizer, batch, args)
        step_ms = sum(tables[name].values())
        entry = {"profiled_step_ms": step_ms,
                 "top_ops_ms": dict(sorted(tables[name].items(), key=lambda kv: -kv[1])[:args.top])}
        generator_ms = generator_time(model, args)
        if generator_ms is not None:
            entry["generator_fwd_bwd_ms"] = generator_ms
            entry["generator_share_of_step"] = generator_ms / step_ms
        report["models"][name] = entry
    plain = tables["t5"]
    for name in args.methods:
        ops = set(plain) | set(tables[name])
        growth = {op: tables[name].get(op, 0.0) - plain.get(op, 0.0) for op in ops}
        entry = report["models"][name]
        entry["step_ratio"] = entry["profiled_step_ms"] / report["models"]["t5"]["profiled_step_ms"]
        entry["growth_over_t5_ms"] = dict(sorted(growth.items(), key=lambda kv: -kv[1])[:args.top])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
