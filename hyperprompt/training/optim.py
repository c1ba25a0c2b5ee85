"""The optimizer and the learning-rate schedule of a recipe.

Adafactor's defaults are those of T5's fine-tuning, which ran on Mesh TensorFlow's ``AdafactorOptimizer``:
updates multiplied by the parameter's scale (``multiply_by_parameter_scale=True``, here
``scale_parameter``), an external constant learning rate of 1e-3 (no relative step), update clipping at
1.0, second-moment decay ``1 - t^-0.8``, no first moment. Each is a recipe key (``optimizer.*``).
"""

from __future__ import annotations

import math

import torch
from transformers import Adafactor

from hyperprompt.training.config import TrainConfig


def learning_rate(step: int, config: TrainConfig) -> float:
    """LR of optimizer step ``step`` (0-based): linear warm-up, then constant / linear / cosine decay.

    Adafactor with ``relative_step: true`` ignores it and computes its own step size."""
    base, schedule = config.optimizer.lr, config.schedule
    if step < schedule.warmup_steps:
        return base * (step + 1) / schedule.warmup_steps
    if schedule.name == "constant":
        return base
    progress = min(1.0, (step - schedule.warmup_steps) / max(1, config.max_steps - schedule.warmup_steps))
    floor = schedule.min_lr_ratio
    if schedule.name == "linear":
        return base * (1.0 - (1.0 - floor) * progress)
    return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """``transformers.Adafactor`` with the recipe's ``optimizer.*`` options, or ``torch.optim.AdamW``.
    Weight decay applies to matrices only (not layer norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = config.optimizer
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": opt.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if opt.name == "adamw":
        return torch.optim.AdamW(groups, lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps)
    # Adafactor refuses an external LR together with its relative step (which then sets the step size)
    lr = None if opt.relative_step else opt.lr
    return Adafactor(groups, lr=lr, scale_parameter=opt.scale_parameter, relative_step=opt.relative_step,
                     warmup_init=opt.warmup_init, clip_threshold=opt.clip_threshold,
                     decay_rate=opt.decay_rate, beta1=opt.beta1)
