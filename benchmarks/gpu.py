"""One short GPU check (≤ 5 minutes): t5-base-shaped training steps in bf16, plain T5 vs
HyperPrompt-Global, tokens/s and model-FLOPs utilisation (MFU). Prints JSON.

The step is the training loop's (bf16 autocast, forward, backward, gradient clipping, fused AdamW,
zero_grad); both models are timed interleaved in one process. MFU counts the same plain-T5 matmul
FLOPs for both models (prompt work is overhead, not useful FLOPs), so their MFU ratio is their speed
ratio. Peak: H100/H200 dense bf16 = 989 TFLOP/s (override with --peak-tflops).

    python benchmarks/gpu.py                          # on a GPU machine
    python benchmarks/gpu.py --device cpu --size t5-tiny --batch-size 2 --input-length 32 --steps 2   # smoke test
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from transformers import T5ForConditionalGeneration

import hyperprompt.model  # noqa: F401
from hyperprompt.model import HyperPromptConfig, MethodConfig
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.presets import t5_config

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def t5_training_flops(config, batch: int, input_length: int, target_length: int) -> float:
    """Matmul FLOPs of one training step (3 x forward; forward = 2 x multiply-adds) of plain T5."""
    d, y, ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    ffn = (3 if config.is_gated_act else 2) * d * ff
    n, t = input_length, target_length
    encoder = config.num_layers * n * (4 * d * y + 2 * n * y + ffn)
    decoder = config.num_decoder_layers * (t * (4 * d * y + 2 * t * y)  # self-attention
                                           + t * 2 * d * y + n * 2 * d * y + t * 2 * n * y  # cross-attention
                                           + t * ffn)
    lm_head = t * d * config.vocab_size
    return 3 * 2 * batch * (encoder + decoder + lm_head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="t5-base")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-length", type=int, default=512)
    parser.add_argument("--target-length", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True

    torch.manual_seed(0)
    backbone = T5ForConditionalGeneration(t5_config(args.size, dropout_rate=0.0))
    tasks = [f"task{i}" for i in range(args.tasks)]
    models = {
        "t5": MultiTaskT5(copy.deepcopy(backbone), MethodConfig(task_names=tasks)),
        "hyperprompt-global": MultiTaskT5.registry["hyperprompt-global"].from_base(
            copy.deepcopy(backbone), HyperPromptConfig(task_names=tasks, compute_all_tasks=args.compile)),
    }
    models = {n: m.to(args.device).train() for n, m in models.items()}
    optimizers = {n: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=cuda) for n, m in models.items()}
    callables = {n: (torch.compile(m) if args.compile else m) for n, m in models.items()}

    g = torch.Generator().manual_seed(1)
    vocab = backbone.config.vocab_size
    batch = {
        "input_ids": torch.randint(3, vocab, (args.batch_size, args.input_length), generator=g),
        "attention_mask": torch.ones(args.batch_size, args.input_length, dtype=torch.long),
        "labels": torch.randint(3, vocab, (args.batch_size, args.target_length), generator=g),
        "task_ids": torch.randint(0, args.tasks, (args.batch_size,), generator=g),
    }
    batch = {k: v.to(args.device) for k, v in batch.items()}

    def step(name: str) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16):
            loss = callables[name](**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(models[name].parameters(), 1.0)
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(args.warmup):
        for name in models:
            step(name)
    times: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(args.steps):
        for name in models:
            times[name].append(step(name))
    peak_memory = {}
    for name in models:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        step(name)
        peak_memory[name] = torch.cuda.max_memory_allocated() if cuda else None

    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)
    flops = t5_training_flops(backbone.config, args.batch_size, args.input_length, args.target_length)
    tokens = args.batch_size * (args.input_length + args.target_length)
    results = {}
    for name, t in times.items():
        median = statistics.median(t)
        results[name] = {
            "step_s": median, "tokens_per_s": tokens / median, "model_tflops_per_s": flops / median / 1e12,
            "mfu": (flops / median / 1e12 / peak) if peak else None, "peak_memory_bytes": peak_memory[name],
        }
    print(json.dumps({
        "benchmark": "gpu", "device": device_name, "torch": torch.__version__, "settings": vars(args),
        "model_flops_per_step": flops, "results": results,
        "ratio_hyperprompt_vs_t5": {"step": results["hyperprompt-global"]["step_s"] / results["t5"]["step_s"],
                                    "memory": (peak_memory["hyperprompt-global"] / peak_memory["t5"]) if cuda else None},
    }, indent=2))


if __name__ == "__main__":
    main()
