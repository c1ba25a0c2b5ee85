"""Attention statistics of a decoder-only LM: one ``decoder`` stack, queries that predict target tokens."""

from __future__ import annotations

import numpy as np
from transformers import ByT5Tokenizer

from hyperprompt.analysis import analyze_splits
from hyperprompt.data import encode_task, synthetic_tasks
from hyperprompt.model import MethodConfig, MultiTaskT5
from hyperprompt.model.causal_lm import tiny_causal_lm


def test_decoder_only_stats_count_the_target_predicting_queries():
    tasks = synthetic_tasks(0, register=False)[:2]
    tokenizer = ByT5Tokenizer()
    splits = [encode_task(task, "validation", tokenizer, 16, 8) for task in tasks]
    results = {}
    for method in ("hyperprompt-global", "mtl"):
        config = MethodConfig.from_dict({"method": method, "task_names": [t.name for t in tasks],
                                         **({"decoder_prompt_length": 3} if method != "mtl" else {})})
        model = MultiTaskT5.registry[method].from_base(tiny_causal_lm("qwen2-tiny"), config)
        results[method] = analyze_splits(model, splits, pad_token_id=tokenizer.pad_token_id, max_examples=10,
                                         batch_size=4)
    for split in splits:
        stats = results["hyperprompt-global"][split.task]
        assert stats.num_examples == 10 and set(stats.entropies) == {"decoder"}
        assert stats.prompt_length == {"decoder": 3}
        assert len(stats.prompt_mass["decoder"]) == 2 and all(0 < m < 1 for m in stats.prompt_mass["decoder"])
        targets = sum(len(split.labels[i]) for i in range(10))  # each target token (EOS included) is predicted once
        assert [len(values) for values in stats.entropies["decoder"]] == [targets, targets]
        assert all(np.all(values >= 0) for values in stats.entropies["decoder"])
        assert results["mtl"][split.task].prompt_mass["decoder"] is None
