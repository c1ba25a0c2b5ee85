"""Overhead over plain T5 of HyperPrompt (and any other method): training step, greedy generation, memory.

Every model is a random-init copy of the same backbone (t5-small shape by default), timed in one
process with the measurements interleaved (round robin, median over repeats), so machine noise hits
all of them alike. Prints JSON.

Memory: on CUDA, the peak allocated bytes of a training step. On CPU (no allocator statistics) the
bytes of the tensors autograd saves for backward in one step plus parameter, gradient and optimizer
state bytes -- deterministic, and what a training step's peak is made of.

    python benchmarks/overhead.py                    # t5-small shape, batch 32, input 128, target 16
    python benchmarks/overhead.py --threads 1 --clock process   # robust on a shared CPU
    python benchmarks/overhead.py --methods hyperprompt-global prefix-tuning prompt-tuning adapter hyperformer++
    python benchmarks/overhead.py --methods hyperprompt-global --sweep-prompt-lengths 4 16 64
    python benchmarks/overhead.py --size t5-base --input-length 512 --batch-size 8 --device cuda --bf16
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import time

import torch
from transformers import T5ForConditionalGeneration

import hyperprompt.model  # noqa: F401  (registers every method)
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.presets import t5_config

PROMPT_METHODS = ("hyperprompt-global", "hyperprompt-share", "hyperprompt-sep", "prefix-tuning")


def method_settings(method: str, encoder_length: int, decoder_length: int) -> dict:
    if method in PROMPT_METHODS:
        return {"encoder_prompt_length": encoder_length, "decoder_prompt_length": decoder_length}
    if method == "prompt-tuning":
        return {"prompt_length": encoder_length}
    return {}


def build_models(args: argparse.Namespace) -> dict[str, MultiTaskT5]:
    """``t5`` (plain) plus each method; with ``--sweep-prompt-lengths``, each prompt method once per
    length L (prompts L/L) and the others once."""
    torch.manual_seed(0)
    backbone = T5ForConditionalGeneration(t5_config(args.size, dropout_rate=0.0))
    tasks = [f"task{i}" for i in range(args.tasks)]
    models: dict[str, MultiTaskT5] = {"t5": MultiTaskT5(copy.deepcopy(backbone), MethodConfig(task_names=tasks))}
    for method in args.methods:
        lengths = [(args.encoder_prompt_length, args.decoder_prompt_length)]
        if args.sweep_prompt_lengths and (method in PROMPT_METHODS or method == "prompt-tuning"):
            lengths = [(length, length) for length in args.sweep_prompt_lengths]
        for encoder_length, decoder_length in lengths:
            config = MethodConfig.from_dict({"method": method, "task_names": tasks,
                                             **method_settings(method, encoder_length, decoder_length)})
            name = method if len(lengths) == 1 else f"{method}@{encoder_length}"
            models[name] = MultiTaskT5.registry[method].from_base(copy.deepcopy(backbone), config)
    return {name: m.to(args.device) for name, m in models.items()}


def make_batch(args: argparse.Namespace, vocab_size: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, vocab_size, (args.batch_size, args.input_length), generator=g)
    attention_mask = torch.ones_like(input_ids)
    lengths = torch.randint(args.input_length // 2, args.input_length + 1, (args.batch_size,), generator=g)
    attention_mask[torch.arange(args.input_length)[None, :] >= lengths[:, None]] = 0  # realistic padding
    labels = torch.randint(3, vocab_size, (args.batch_size, args.target_length), generator=g)
    task_ids = torch.randint(0, args.tasks, (args.batch_size,), generator=g)
    batch = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels, task_ids=task_ids)
    return {k: v.to(args.device) for k, v in batch.items()}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def autocast(args: argparse.Namespace):
    if args.bf16:
        return torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def clock(args: argparse.Namespace) -> float:
    # CPU time of this process is robust to other processes sharing the cores (use with --threads 1)
    return time.process_time() if args.clock == "process" else time.perf_counter()


def train_step(model, optimizer, batch, args) -> float:
    synchronize(args.device)
    start = clock(args)
    with autocast(args):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    synchronize(args.device)
    return clock(args) - start


@torch.no_grad()
def generate_step(model, batch, args) -> float:
    synchronize(args.device)
    start = clock(args)
    with autocast(args):
        model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], task_ids=batch["task_ids"],
                       max_new_tokens=args.target_length, min_new_tokens=args.target_length, do_sample=False)
    synchronize(args.device)
    return clock(args) - start


def training_memory(model, optimizer, batch, args) -> int:
    """Peak bytes of one training step (see the module docstring for the CPU measure)."""
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        train_step(model, optimizer, batch, args)
        return torch.cuda.max_memory_allocated()
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(args):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if isinstance(t, torch.Tensor))
    optimizer.zero_grad(set_to_none=True)
    return sum(saved.values()) + 2 * params + state  # activations + params + grads + optimizer state


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """The backbone, batch and prompt shape options (shared with profile_step.py)."""
    parser.add_argument("--size", default="t5-small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-length", type=int, default=128)
    parser.add_argument("--target-length", type=int, default=16)
    parser.add_argument("--encoder-prompt-length", type=int, default=16)
    parser.add_argument("--decoder-prompt-length", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=8)


def time_training(models: dict, batch: dict, args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per model: ``args.repeats`` training-step times, interleaved across the models after one warm-up step
    each (so load drift on a shared machine hits them alike), and the peak training memory."""
    optimizers = {n: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-5)
                  for n, m in models.items()}
    for name, model in models.items():  # warm-up (allocator, first-call overheads)
        model.train()
        train_step(model, optimizers[name], batch, args)
    times: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(train_step(model, optimizers[name], batch, args))
    return times, {n: training_memory(m, optimizers[n], batch, args) for n, m in models.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_arguments(parser)
    parser.add_argument("--methods", nargs="+", default=list(PROMPT_METHODS[:3]),
                        help="any registered methods (default: the HyperPrompt variants)")
    parser.add_argument("--sweep-prompt-lengths", nargs="+", type=int, default=None, metavar="L",
                        help="time each prompt method at encoder = decoder prompt length L")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--generate-repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="'process': CPU time of this process (robust on a shared machine; use --threads 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    models = build_models(args)
    batch = make_batch(args, models["t5"].base.config.vocab_size)
    train_times, memory = time_training(models, batch, args)

    generate_times: dict[str, list[float]] = {n: [] for n in models}
    for model in models.values():
        model.eval()
        generate_step(model, batch, args)
    for _ in range(args.generate_repeats):
        for name, model in models.items():
            generate_times[name].append(generate_step(model, batch, args))

    def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
        base = statistics.median(times["t5"])
        return {n: {"median_s": statistics.median(t), "ratio": statistics.median(t) / base} for n, t in times.items()}

    report = {
        "benchmark": "overhead",
        "machine": {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
                    or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "settings": vars(args),
        "added_parameters": {n: m.num_added_parameters() for n, m in models.items()},
        "backbone_parameters": models["t5"].num_backbone_parameters(),
        "train_step": summary(train_times),
        "train_tokens_per_s": {n: args.batch_size * (args.input_length + args.target_length) / statistics.median(t)
                               for n, t in train_times.items()},
        "generate": summary(generate_times),
        "memory": {n: {"bytes": b, "ratio": b / memory["t5"]} for n, b in memory.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
