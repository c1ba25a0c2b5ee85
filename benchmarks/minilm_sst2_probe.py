"""A quick learning probe of MiniLM-BERT2BERT on SST-2: plain AdamW steps (batch 16, inputs <= 48 tokens,
10 warm-up steps, then a constant learning rate), and every 20 steps the teacher-forced accuracy of the
first target token (``positive`` / ``negative``) on the first 300 validation sentences.

    OMP_NUM_THREADS=1 python benchmarks/minilm_sst2_probe.py --method mtl --steps 200 --lr 1e-4 \\
        --cross-attention-init self --data-dir ../shared/data/glue
"""

from __future__ import annotations

import argparse
import json
import random
import time
import warnings

import torch

from hyperprompt.data import Seq2SeqCollator, encode_task, get_task
from hyperprompt.model import MethodConfig, MultiTaskT5
from hyperprompt.model.presets_encdec import warm_start_tokenizer, warm_started_bert2bert


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="mtl")
    parser.add_argument("--settings", default="{}", help="method settings as JSON")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--cross-attention-init", default="random", choices=["random", "self", "mean"])
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-weights-lr", type=float, help="learning rate of the weights the checkpoint did not "
                        "have (cross-attention, LM-head transform); default: --lr")
    parser.add_argument("--head-init", default="random", choices=["random", "identity"],
                        help="the LM-head transform's dense layer: random (BertLMHeadModel's) or the identity")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    tokenizer = warm_start_tokenizer("minilm-bert2bert")
    task = get_task("glue/sst2", data_dir=args.data_dir)
    train = encode_task(task, "train", tokenizer, 48, 4)
    validation = encode_task(task, "validation", tokenizer, 48, 4)
    base = warm_started_bert2bert("minilm-bert2bert", tokenizer=tokenizer,
                                  cross_attention_init=args.cross_attention_init)
    config = MethodConfig.from_dict({"method": args.method, "task_names": ["sst2"], **json.loads(args.settings)})
    model = MultiTaskT5.registry[args.method].from_base(base, config)
    if args.head_init == "identity":
        with torch.no_grad():
            dense = base.decoder.cls.predictions.transform.dense
            dense.weight.copy_(torch.eye(dense.weight.shape[0]))
            dense.bias.zero_()
    new = set(base.config.warm_start_new_weights)
    new_params = [p for n, p in model.named_parameters() if n.removeprefix("base.") in new]
    others = [p for n, p in model.named_parameters() if p.requires_grad and n.removeprefix("base.") not in new]
    new_lr = args.new_weights_lr or args.lr
    optimizer = torch.optim.AdamW([{"params": others, "lr": args.lr}, {"params": new_params, "lr": new_lr}])
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10))  # 10 steps
    collate = Seq2SeqCollator(tokenizer.pad_token_id)

    def accuracy(n: int = 300) -> float:
        model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, n, 100):
                batch = collate([validation.feature(i, 0) for i in range(start, start + 100)])
                logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels", "task_ids")}).logits
                correct += (logits[:, 0].argmax(-1) == batch["labels"][:, 0]).sum().item()
        model.train()
        return correct / n

    order = list(range(len(train)))
    random.shuffle(order)
    losses, start = [], time.time()
    print(f"{args.method} {args.settings} cross-attention {args.cross_attention_init} lr {args.lr} new-weights lr "
          f"{new_lr} ({sum(p.numel() for p in new_params):,} numbers) head {args.head_init}")
    for step in range(args.steps):
        batch = collate([train.feature(i, 0) for i in order[step * 16:(step + 1) * 16]])
        loss = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels", "task_ids")}).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        warmup.step()
        losses.append(loss.item())
        if (step + 1) % 20 == 0:
            print(f"step {step + 1} loss {sum(losses[-20:]) / 20:.3f} label-token accuracy {accuracy():.3f} "
                  f"{(time.time() - start) / (step + 1):.2f} s/step", flush=True)


if __name__ == "__main__":
    main()
