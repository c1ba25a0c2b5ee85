"""Decoder-only examples: one sequence per example, the loss on the target only, left-padded generation;
and the collator chosen from the model."""

from __future__ import annotations

import pytest
import torch
from transformers import ByT5Tokenizer

from hyperprompt.data import CausalLMCollator, Seq2SeqCollator, make_collator
from hyperprompt.errors import InputError
from hyperprompt.model import MethodConfig, MultiTaskT5
from hyperprompt.model.causal_lm import tiny_causal_lm

FEATURES = [{"input_ids": [10, 11, 1], "labels": [20, 1], "task_id": 0},
            {"input_ids": [12, 1], "labels": [21, 22, 23, 1], "task_id": 1}]


def test_input_and_target_in_one_sequence_loss_on_target_only():
    batch = CausalLMCollator(pad_token_id=0, bos_token_id=5)(FEATURES)
    assert batch["input_ids"].tolist() == [[5, 10, 11, 1, 20, 1, 0], [5, 12, 1, 21, 22, 23, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1, 0], [1] * 7]
    assert batch["labels"].tolist() == [[-100, -100, -100, -100, 20, 1, -100], [-100, -100, -100, 21, 22, 23, 1]]
    assert batch["task_ids"].tolist() == [0, 1]


def test_left_padding_and_generation_inputs():
    left = CausalLMCollator(pad_token_id=0, padding_side="left")  # no BOS (ByT5)
    batch = left(FEATURES)
    assert batch["input_ids"].tolist() == [[0, 10, 11, 1, 20, 1], [12, 1, 21, 22, 23, 1]]
    assert batch["labels"].tolist() == [[-100, -100, -100, -100, 20, 1], [-100, -100, 21, 22, 23, 1]]
    prompts = left([{"input_ids": f["input_ids"], "task_id": f["task_id"]} for f in FEATURES])
    assert prompts["input_ids"].tolist() == [[10, 11, 1], [0, 12, 1]] and "labels" not in prompts
    generated = torch.tensor([[10, 11, 1, 7, 8], [0, 12, 1, 9, 1]])
    assert left.new_tokens(generated, prompts).tolist() == [[7, 8], [9, 1]]
    with pytest.raises(InputError, match="padding_side='middle'"):
        CausalLMCollator(0, padding_side="middle")


def test_collator_is_chosen_from_the_model():
    tokenizer = ByT5Tokenizer()
    assert isinstance(make_collator(tokenizer, decoder_only=False), Seq2SeqCollator)
    train = make_collator(tokenizer, decoder_only=True)
    generation = make_collator(tokenizer, decoder_only=True, generation=True)
    assert isinstance(train, CausalLMCollator) and train.padding_side == "right" and train.bos == []
    assert generation.padding_side == "left" and generation.pad_token_id == tokenizer.pad_token_id


def test_training_loss_is_the_same_under_either_padding_side():
    base = tiny_causal_lm("qwen2-tiny")
    model = MultiTaskT5.registry["hyperprompt-global"].from_base(
        base, MethodConfig.from_dict({"method": "hyperprompt-global", "task_names": ["a", "b"],
                                      "decoder_prompt_length": 2})).eval()
    losses = {}
    for side in ("right", "left"):
        batch = CausalLMCollator(0, padding_side=side)(FEATURES)
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            losses[side] = model(**batch, position_ids=positions).loss
    assert torch.allclose(losses["right"], losses["left"], atol=1e-5)
