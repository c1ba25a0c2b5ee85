"""Decoder-only overhead: plain causal LM, HyperPrompt-Global, our prefix tuning and peft's prefix tuning on
the same random-init Qwen2.5-0.5B-shaped model (hidden 896, 14 query / 2 key-value heads of 64, FFN 4864),
training step and cached greedy generation, interleaved in one process (round robin, median over repeats).
Prints JSON.

peft's prefix tuning puts its prefixes in the KV cache (``past_key_values``) and trains them on a frozen
backbone; ours prepend them inside attention. Full-size runs (24 layers, vocabulary 151,936) need a GPU or
more memory than a shared CPU has: ``--layers`` and ``--vocab-size`` shrink the model (a smaller vocabulary
makes the LM head cheaper, so the prompts' share of a step -- the overhead ratio -- larger, not smaller).

    python benchmarks/overhead_causal.py --threads 1 --clock process --layers 4 --vocab-size 32000
    python benchmarks/overhead_causal.py --device cuda --bf16          # the full shape on a GPU
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics

import torch
from overhead import clock, synchronize, time_training
from torch import nn
from transformers import AutoModelForCausalLM

import hyperprompt.model  # noqa: F401  (registers every method)
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.causal_lm import CAUSAL_LM_SIZES, causal_lm_size_config
from hyperprompt.model.config import MethodConfig


class WithoutTaskIds(nn.Module):
    """Calls a model that takes no ``task_ids`` (peft's) with our benchmark batches."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, task_ids: torch.Tensor, **batch: torch.Tensor):
        return self.model(**batch)

    def generate(self, task_ids: torch.Tensor, **kwargs: torch.Tensor):
        return self.model.generate(**kwargs)


def build_models(args: argparse.Namespace) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    overrides = {"num_hidden_layers": args.layers} if args.layers else {}
    if args.vocab_size:
        overrides["vocab_size"] = args.vocab_size
    config = causal_lm_size_config(args.size, pad_token_id=0, eos_token_id=1, **overrides)
    backbone = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    tasks = [f"task{i}" for i in range(args.tasks)]

    def ours(method: str, frozen: bool) -> MultiTaskT5:
        settings = MethodConfig.from_dict({"method": method, "task_names": tasks, "freeze_backbone": frozen,
                                           "decoder_prompt_length": args.prompt_length})
        return MultiTaskT5.registry[method].from_base(copy.deepcopy(backbone), settings)

    models = {
        "plain": MultiTaskT5(copy.deepcopy(backbone), MethodConfig(task_names=tasks)),
        "hyperprompt-global": ours("hyperprompt-global", False),
        "hyperprompt-global (frozen)": ours("hyperprompt-global", True),
        "prefix-tuning (frozen)": ours("prefix-tuning", True),
    }
    try:  # the lent GPU machines have no peft: the reference is then left out
        from peft import PrefixTuningConfig, TaskType, get_peft_model
    except ImportError:
        return {name: model.to(args.device) for name, model in models.items()}
    peft_config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.prompt_length)
    models["peft-prefix-tuning (frozen)"] = WithoutTaskIds(get_peft_model(copy.deepcopy(backbone), peft_config))
    return {name: model.to(args.device) for name, model in models.items()}


def make_batch(args: argparse.Namespace, vocab_size: int) -> dict[str, torch.Tensor]:
    """Input then target in one right-padded sequence, the loss on the target (as the data pipeline)."""
    g = torch.Generator().manual_seed(1)
    length = args.input_length + args.target_length
    input_ids = torch.randint(3, vocab_size, (args.batch_size, length), generator=g)
    lengths = torch.randint(length // 2, length + 1, (args.batch_size,), generator=g)
    attention_mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, : args.input_length] = -100
    task_ids = torch.randint(0, args.tasks, (args.batch_size,), generator=g)
    batch = dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels, task_ids=task_ids)
    return {k: v.to(args.device) for k, v in batch.items()}


@torch.no_grad()
def generate_step(model: nn.Module, prompts: dict[str, torch.Tensor], args: argparse.Namespace) -> float:
    synchronize(args.device)
    start = clock(args)
    with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16):
        model.generate(input_ids=prompts["input_ids"], attention_mask=prompts["attention_mask"],
                       task_ids=prompts["task_ids"], max_new_tokens=args.target_length,
                       min_new_tokens=args.target_length, do_sample=False)
    synchronize(args.device)
    return clock(args) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="qwen2.5-0.5b", choices=list(CAUSAL_LM_SIZES))
    parser.add_argument("--layers", type=int, default=None, help="keep only this many layers (default: all)")
    parser.add_argument("--vocab-size", type=int, default=None, help="default: the released vocabulary")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--input-length", type=int, default=40)
    parser.add_argument("--target-length", type=int, default=8)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--generate-repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=["wall", "process"], default="wall")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    models = build_models(args)
    vocab = models["plain"].base.config.vocab_size
    batch = make_batch(args, vocab)
    train_times, memory = time_training(models, batch, args)

    inputs = batch["input_ids"][:, : args.input_length]  # unpadded prompts: generation continues every row
    prompts = {"input_ids": inputs, "attention_mask": torch.ones_like(inputs), "task_ids": batch["task_ids"]}
    generate_models = {n: m for n, m in models.items() if "frozen" not in n or n.startswith("peft")}
    for model in generate_models.values():
        model.eval()
        generate_step(model, prompts, args)
    generate_times: dict[str, list[float]] = {n: [] for n in generate_models}
    for _ in range(args.generate_repeats):
        for name, model in generate_models.items():
            generate_times[name].append(generate_step(model, prompts, args))

    def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
        base = statistics.median(times["plain"])
        return {n: {"median_s": statistics.median(t), "ratio": statistics.median(t) / base} for n, t in times.items()}

    print(json.dumps({
        "benchmark": "overhead_causal",
        "machine": {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
                    or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "settings": vars(args),
        "backbone_parameters": models["plain"].num_backbone_parameters(),
        "trainable_parameters": {n: sum(p.numel() for p in m.parameters() if p.requires_grad)
                                 for n, m in models.items()},
        "train_step": summary(train_times),
        "generate": summary(generate_times),
        "memory": {n: {"bytes": b, "ratio": b / memory["plain"]} for n, b in memory.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
