"""GPU correctness of the fast paths (the CPU test suite checks the same on CPU). Prints JSON; exits 1 on a failure.

On the device, for HyperPrompt-Global on a random-init T5 (mixed-task batch with padding):
- fp32 logits on the device equal the CPU's (TF32 off) within 1e-4 relative to their scale;
- bf16 autocast logits stay within bf16 tolerance of fp32 (5e-2 relative to their scale);
- greedy generation with the KV cache equals generation without it (fp32) and with cached hyper-prompts;
- on CUDA, forward and backward run with SDPA restricted to its fused memory-efficient kernel, i.e. the
  prompt-extended additive bias does not force the slow math fallback (in fp32 and in bf16).

    python benchmarks/gpu_correctness.py                     # on a GPU machine (t5-small shape)
    python benchmarks/gpu_correctness.py --device cpu --size t5-tiny     # smoke test
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

import torch
from transformers import T5ForConditionalGeneration

import hyperprompt.model  # noqa: F401  (registers every method)
from hyperprompt.model import HyperPromptConfig
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.presets import t5_config


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.float() - expected.float()).abs().max() / expected.float().abs().max()).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="t5-small")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--input-length", type=int, default=64)
    parser.add_argument("--target-length", type=int, default=8)
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    torch.manual_seed(0)
    tasks = ["a", "b", "c"]
    reference = MultiTaskT5.registry["hyperprompt-global"].from_base(
        T5ForConditionalGeneration(t5_config(args.size, dropout_rate=0.0)), HyperPromptConfig(task_names=tasks)).eval()
    model = copy.deepcopy(reference).to(args.device)
    g = torch.Generator().manual_seed(1)
    vocab = reference.base.config.vocab_size
    B, S, T = args.batch_size, args.input_length, args.target_length
    input_ids = torch.randint(3, vocab, (B, S), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[: B // 2, S // 2:] = 0  # padding in half the rows
    batch = {"input_ids": input_ids, "attention_mask": attention_mask,
             "labels": torch.randint(3, vocab, (B, T), generator=g), "task_ids": torch.arange(B) % len(tasks)}
    on_device = {k: v.to(args.device) for k, v in batch.items()}
    checks: dict[str, dict] = {}

    with torch.no_grad():
        expected = reference(**batch).logits
        fp32 = model(**on_device).logits.cpu()
        with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16):
            bf16 = model(**on_device).logits.float().cpu()
    checks["fp32_device_vs_cpu"] = {"relative_error": relative_error(fp32, expected), "tolerance": 1e-4}
    checks["bf16_vs_fp32"] = {"relative_error": relative_error(bf16, expected), "tolerance": 5e-2}
    for check in checks.values():
        check["ok"] = check["relative_error"] <= check["tolerance"]

    generate = dict(input_ids=on_device["input_ids"], attention_mask=on_device["attention_mask"],
                    task_ids=on_device["task_ids"], max_new_tokens=T, do_sample=False)
    cached = model.generate(**generate, use_cache=True)
    uncached = model.generate(**generate, use_cache=False)
    checks["generate_cache_equals_no_cache"] = {"ok": torch.equal(cached, uncached)}

    if cuda:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        for dtype in (torch.float32, torch.bfloat16):
            name = f"fused_sdpa_kernel_{str(dtype).removeprefix('torch.')}"
            model.train()
            try:
                with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]), torch.autocast(
                        "cuda", dtype=dtype, enabled=dtype != torch.float32):
                    model(**on_device).loss.backward()
                checks[name] = {"ok": True}
            except RuntimeError as error:  # "No available kernel": SDPA would fall back to the math path
                checks[name] = {"ok": False, "error": str(error)[:500]}
            model.zero_grad(set_to_none=True)

    ok = all(check["ok"] for check in checks.values())
    print(json.dumps({"benchmark": "gpu_correctness", "device": torch.cuda.get_device_name() if cuda else "cpu",
                      "torch": torch.__version__, "settings": vars(args), "ok": ok, "checks": checks}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
