"""An outside reference: peft's prefix tuning on the same T5, next to plain T5, our prefix tuning and
HyperPrompt-Global -- training step time and memory, interleaved in one process. Prints JSON.

peft's prefix tuning for T5 puts its prefixes in the decoder's cache (``past_key_values``; T5's encoder
does not read it), so it conditions less than ours. peft freezes the backbone; ours are timed frozen (the same
training setting) and fully tuned (the paper's). Memory is measured as in ``overhead.py``.

    python benchmarks/peft_reference.py --threads 1 --clock process
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch
from overhead import make_batch, time_training
from peft import PrefixTuningConfig, TaskType, get_peft_model
from torch import nn
from transformers import T5ForConditionalGeneration

import hyperprompt.model  # noqa: F401  (registers every method)
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import MethodConfig
from hyperprompt.model.presets import t5_config


class WithoutTaskIds(nn.Module):
    """Calls a model that takes no ``task_ids`` (peft's) with our benchmark batches."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, task_ids: torch.Tensor, **batch: torch.Tensor):
        return self.model(**batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="t5-small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--input-length", type=int, default=128)
    parser.add_argument("--target-length", type=int, default=16)
    parser.add_argument("--prefix-length", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=["wall", "process"], default="wall")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    backbone = T5ForConditionalGeneration(t5_config(args.size, dropout_rate=0.0))
    tasks = [f"task{i}" for i in range(args.tasks)]
    peft_config = PrefixTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=args.prefix_length)
    ours = {"encoder_prompt_length": args.prefix_length, "decoder_prompt_length": args.prefix_length}
    def ours_model(method: str, frozen: bool, **settings) -> MultiTaskT5:
        config = MethodConfig.from_dict({"method": method, "task_names": tasks, "freeze_backbone": frozen, **settings})
        return MultiTaskT5.registry[method].from_base(copy.deepcopy(backbone), config)

    # peft trains its prefixes on a frozen backbone; ours are timed both ways (the paper tunes everything)
    models = {
        "t5": MultiTaskT5(copy.deepcopy(backbone), MethodConfig(task_names=tasks)),
        "peft-prefix-tuning (frozen)": WithoutTaskIds(get_peft_model(copy.deepcopy(backbone), peft_config)),
        "prefix-tuning (frozen)": ours_model("prefix-tuning", True, **ours),
        "hyperprompt-global (frozen)": ours_model("hyperprompt-global", True),
        "prefix-tuning": ours_model("prefix-tuning", False, **ours),
        "hyperprompt-global": ours_model("hyperprompt-global", False),
    }
    models = {n: m.to(args.device).train() for n, m in models.items()}
    batch = make_batch(args, backbone.config.vocab_size)
    times, memory = time_training(models, batch, args)
    base_time = statistics.median(times["t5"])
    print(json.dumps({
        "benchmark": "peft_reference",
        "settings": vars(args),
        "trainable_parameters": {n: sum(p.numel() for p in m.parameters() if p.requires_grad) for n, m in models.items()},
        "train_step": {n: {"median_s": statistics.median(t), "ratio": statistics.median(t) / base_time}
                       for n, t in times.items()},
        "memory": {n: {"bytes": b, "ratio": b / memory["t5"]} for n, b in memory.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
