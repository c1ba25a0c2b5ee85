"""How much each method changes a pretrained backbone at initialisation (step 0).

MiniLM-BERT2BERT (``minilm-bert2bert``), 64 SST-2 validation sentences (inputs <= 128 tokens): the relative
change ``||E' - E|| / ||E||`` of the encoder's output E over real tokens and the mean cosine between them,
for each method at its defaults and for the prompt methods at smaller initialisations; plus MiniLM's own
key / value std. Runs on the CPU in about a minute:

    OMP_NUM_THREADS=1 python benchmarks/minilm_step0.py --data-dir ../shared/data/glue
"""

from __future__ import annotations

import argparse
import warnings

import torch

from hyperprompt.data import Seq2SeqCollator, encode_task, get_task
from hyperprompt.model import MethodConfig, MultiTaskT5
from hyperprompt.model.attention import set_attention_implementation
from hyperprompt.model.presets_encdec import warm_start_tokenizer, warm_started_bert2bert

SETTINGS = [
    ("hyperprompt-global", {}),
    ("hyperprompt-global", {"hypernetwork_init_scale": 0.3}),
    ("hyperprompt-global", {"hypernetwork_init_scale": 0.1}),
    ("hyperprompt-global", {"hypernetwork_init_scale": 0.1, "encoder_prompt_length": 8}),
    ("hyperprompt-share", {}),
    ("hyperprompt-share", {"hypernetwork_init_scale": 0.1}),
    ("hyperprompt-sep", {"hypernetwork_init_scale": 0.1}),
    ("prefix-tuning", {}),
    ("prefix-tuning", {"init_std": 0.1}),
    ("prompt-tuning", {"prompt_length": 16}),
    ("adapter", {}),
    ("hyperformer++", {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--examples", type=int, default=64)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    tokenizer = warm_start_tokenizer("minilm-bert2bert")
    split = encode_task(get_task("glue/sst2", data_dir=args.data_dir), "validation", tokenizer, 128, 4)
    batch = Seq2SeqCollator(tokenizer.pad_token_id)([split.feature(i, 0) for i in range(args.examples)])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    real = mask.bool()
    base = warm_started_bert2bert("minilm-bert2bert", tokenizer=tokenizer).eval()
    stats: dict[str, list[float]] = {"key": [], "value": []}
    hooks = [getattr(layer.attention.self, name).register_forward_hook(
        lambda module, inputs, out, name=name: stats[name].append(out[real].std().item()))
        for layer in base.encoder.encoder.layer for name in ("key", "value")]
    with torch.no_grad():
        reference = base.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    for hook in hooks:
        hook.remove()
    print("MiniLM encoder key std per layer:", " ".join(f"{s:.2f}" for s in stats["key"]))
    print("MiniLM encoder value std per layer:", " ".join(f"{s:.2f}" for s in stats["value"]))
    print("| method | settings | relative change of the encoder output | mean cosine |\n|---|---|---|---|")
    for method, settings in SETTINGS:
        torch.manual_seed(0)
        config = MethodConfig.from_dict({"method": method, "task_names": ["sst2"], **settings})
        model = MultiTaskT5.registry[method].from_base(base, config).eval()
        task_ids = torch.zeros(ids.shape[0], dtype=torch.long)
        with torch.no_grad():
            inputs = model.conditioning_inputs(task_ids, {"input_ids": ids, "attention_mask": mask})
            out = base.encoder(**inputs).last_hidden_state[:, -ids.shape[1]:]  # prompt tuning prepends tokens
        change = ((out[real] - reference[real]).norm() / reference[real].norm()).item()
        cosine = torch.nn.functional.cosine_similarity(out[real], reference[real], dim=-1).mean().item()
        print(f"| {method} | {settings or 'defaults'} | {change:.3f} | {cosine:.3f} |", flush=True)
        set_attention_implementation(base, "sdpa")  # unwrap before the next method
        for module in base.modules():  # and drop the adapters' hooks
            module._forward_hooks.clear()
            for name in ("_prompt_slot", "_adapter_slot"):
                if hasattr(module, name):
                    delattr(module, name)


if __name__ == "__main__":
    main()
