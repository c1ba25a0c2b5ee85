"""What the loop needs beyond accelerate's defaults to run sharded: FSDP2 and DeepSpeed ZeRO 1/2, on GPUs
and on CPU processes.

- :func:`build_accelerator`: one process, DDP, FSDP2 (``fully_shard``) or DeepSpeed ZeRO stage 1/2, chosen
  as ``accelerate launch`` chooses them (``ACCELERATE_USE_FSDP`` + ``FSDP_*``, ``ACCELERATE_USE_DEEPSPEED`` +
  ``ACCELERATE_DEEPSPEED_*``). accelerate 1.15 selects FSDP only on accelerators (``AcceleratorState`` sets
  ``DistributedType.FSDP`` in its GPU branch and ignores it with ``cpu=True``); for CPU processes (torchrun
  + gloo) we set the same two fields that branch sets, so one code path -- accelerate's FSDP2 ``prepare``,
  ``backward``, ``clip_grad_norm_``, ``no_sync`` -- runs everywhere. DeepSpeed on CPU processes needs
  ``cpu=False`` and the backend named (gloo).
- :func:`shard_t5_blocks`: FSDP units are the ``T5Block`` s (the backbone's ``_no_split_modules``) unless the
  accelerate config names a policy; the method's added modules stay in the root unit.
- :class:`FullWeights`: the full model on the main process for ``MultiTaskT5.save_pretrained``, so every
  saved model directory has the format of a one-process run.
- :func:`optimizer_state` / :func:`load_optimizer_state`: the full (unsharded) optimizer state keyed by
  parameter names, the same for one process, DDP and FSDP. DeepSpeed keeps its partitioned state in its
  own files (:func:`save_engine_state` / :func:`load_engine_state`).
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    FullyShardedDataParallelPlugin,
    InitProcessGroupKwargs,
)
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from hyperprompt.errors import InputError
from hyperprompt.model import MultiTaskT5
from hyperprompt.training.config import TrainConfig

logger = logging.getLogger(__name__)

#: Gather to full tensors on the CPU of the main process (the other ranks get empty dicts).
GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
DEEPSPEED_DIR, DEEPSPEED_TAG = "deepspeed", "state"


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def build_accelerator(config: TrainConfig) -> Accelerator:
    """The run's accelerator: one process, DDP, FSDP2 or DeepSpeed ZeRO 1/2 (from the environment that
    ``accelerate launch`` sets from its config, or that a torchrun user sets), on GPUs or CPU processes."""
    # accelerate keeps one AcceleratorState per process; a new run may use another precision or strategy.
    AcceleratorState._reset_state(reset_partial_state=False)
    # Several processes without GPUs (torchrun on CPUs): accelerate needs cpu=True to pick gloo.
    cpu_processes = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    deepspeed = _flag("ACCELERATE_USE_DEEPSPEED")
    handlers: list[Any] = [DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)]
    if cpu_processes and deepspeed:
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    if cpu_processes and PartialState._shared_state.get("distributed_type") == DistributedType.FSDP:
        PartialState._shared_state["distributed_type"] = DistributedType.MULTI_CPU  # left by an earlier run
    accelerator = Accelerator(cpu=cpu_processes and not deepspeed, mixed_precision=config.precision,
                              kwargs_handlers=handlers)
    if cpu_processes and _flag("ACCELERATE_USE_FSDP"):
        plugin = FullyShardedDataParallelPlugin()  # reads FSDP_* from the environment
        if config.precision != "no":
            plugin.set_mixed_precision(config.precision)
        state = AcceleratorState()
        state.distributed_type = DistributedType.FSDP
        state.fsdp_plugin = plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP and not accelerator.is_fsdp2:
        raise NotImplementedError(
            "FSDP1 is not supported: set fsdp_version: 2 in the accelerate config (FSDP_VERSION=2). "
            "hyperprompt shards with FSDP2 (fully_shard), whose parameters keep their shapes and names")
    if kind == DistributedType.FSDP:
        load_weights_on_every_rank(accelerator.state.fsdp_plugin)
    if kind == DistributedType.FSDP and config.optimizer.name == "adafactor":
        raise NotImplementedError(
            "optimizer.name adafactor does not run under FSDP: transformers' Adafactor mixes plain tensors with "
            "FSDP2's sharded (DTensor) parameters. Use optimizer.name: adamw, or DDP")
    if kind == DistributedType.DEEPSPEED and config.optimizer.name == "adafactor":
        raise NotImplementedError(
            "optimizer.name adafactor is not Adafactor under DeepSpeed: ZeRO hands the optimizer flat 1-D "
            "partitions, so it would keep unfactored second moments and clip each partition's update on its own. "
            "Use optimizer.name: adamw, or DDP")
    if kind == DistributedType.DEEPSPEED:
        configure_deepspeed(accelerator, config)
    if kind == DistributedType.MEGATRON_LM:
        raise NotImplementedError("Megatron-LM is not supported (use DDP, FSDP2 or DeepSpeed ZeRO 1/2)")
    return accelerator


def load_weights_on_every_rank(plugin: FullyShardedDataParallelPlugin) -> None:
    """Turn off ``cpu_ram_efficient_loading`` (the default of ``accelerate config`` for FSDP).

    With it, ranks other than 0 build the model without weights (transformers' ``from_pretrained`` reads
    ``FSDP_CPU_RAM_EFFICIENT_LOADING``) and accelerate loads rank 0's into the sharded model with
    ``load_state_dict(assign=True)``, which unties T5's tied embedding and LM head; its optimizer mapping
    then keeps one of the two, and training silently departs from one process (measured on t5-tiny: the
    loss differs from step 2). Every process loads the full weights instead, as under DDP, and
    ``fully_shard`` shards them: sharding still saves GPU memory, not the CPU memory of loading."""
    if plugin.cpu_ram_efficient_loading:
        logger.info("FSDP cpu_ram_efficient_loading is turned off: every process loads the full weights "
                    "(accelerate's loading unties T5's tied embeddings)")
    plugin.cpu_ram_efficient_loading = False
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"


def configure_deepspeed(accelerator: Accelerator, config: TrainConfig) -> None:
    """The recipe decides batch sizes, accumulation and clipping; ZeRO wraps the recipe's optimizer (AdamW)."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin.zero_stage not in (0, 1, 2):
        raise NotImplementedError(
            f"DeepSpeed ZeRO stage {plugin.zero_stage} is not supported: stage 3 shards the parameters, and "
            "generation and checkpoints here need them whole on every rank. Use stage 1 or 2, or FSDP2")
    ds = plugin.deepspeed_config
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise NotImplementedError(f"remove '{key}' from the DeepSpeed config: the recipe's optimizer and "
                                      "learning-rate schedule are used")
    accum, world = config.gradient_accumulation_steps, accelerator.num_processes
    accelerator.gradient_accumulation_steps = accum  # accelerate compares it with DeepSpeed's
    ds.update(train_batch_size=config.batch_size, train_micro_batch_size_per_gpu=config.batch_size // (world * accum),
              gradient_accumulation_steps=accum, gradient_clipping=config.max_grad_norm or 0.0)


def is_fsdp(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.FSDP


def is_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def shard_t5_blocks(accelerator: Accelerator, model: MultiTaskT5) -> None:
    """Before ``prepare``: make each ``T5Block`` an FSDP unit unless the config names a wrap policy, and
    checkpoint activations per unit if the recipe asks for gradient checkpointing.

    Everything outside the blocks (embeddings, final norms, the method's prompt generators /
    hypernetworks) forms the root unit, gathered for the whole forward."""
    if not is_fsdp(accelerator):
        return
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    # A T5Block returns the relative position bias it computed (block 0: a permute/unsqueeze view) for the
    # next blocks, which only read it (T5 and prompted_attention add to it out of place). FSDP2 warns about
    # any view a unit returns; here the gradients are exact (tests/training/test_sharded.py compares them
    # with one process), so the warning would only alarm.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPT5Block\) returned a view tensor",
                            category=UserWarning)
    plugin = accelerator.state.fsdp_plugin
    if plugin.auto_wrap_policy is None:
        plugin.auto_wrap_policy = transformer_auto_wrap_policy
    if plugin.auto_wrap_policy is transformer_auto_wrap_policy and not plugin.transformer_cls_names_to_wrap:
        plugin.transformer_cls_names_to_wrap = sorted(model.base._no_split_modules)
    # transformers' gradient checkpointing recomputes inside an FSDP2 unit, whose hooks then save a different
    # set of tensors (torch.utils.checkpoint.CheckpointError). FSDP2's way: accelerate wraps each unit in a
    # checkpoint wrapper before fully_shard (fsdp_activation_checkpointing) -- the same recomputation.
    if model.is_gradient_checkpointing:
        model.gradient_checkpointing_disable()
        plugin.activation_checkpointing = True


def after_prepare(accelerator: Accelerator, model: nn.Module) -> None:
    """FSDP2 gathers a unit's parameters in its ``forward`` hooks; ``generate`` must trigger the root's too."""
    if is_fsdp(accelerator):
        from torch.distributed.fsdp import register_fsdp_forward_method

        register_fsdp_forward_method(model, "generate")


def backward_options(accelerator: Accelerator) -> dict[str, Any]:
    """``accelerator.backward`` keyword arguments: the loop scales each micro-batch's loss itself, so
    DeepSpeed must not divide it by the accumulation steps again."""
    return {"scale_wrt_gas": False} if is_deepspeed(accelerator) else {}


class FullWeights:
    """The model with full fp32 weights on the main process, for ``save_pretrained`` (call on every rank).

    One process, DDP, DeepSpeed ZeRO 1/2 in fp32: the model itself. FSDP, and DeepSpeed with bf16 / fp16
    (whose module holds 16-bit copies of fp32 master weights partitioned over the ranks): the weights are
    gathered to the main process's CPU and put into a copy of the unprepared model (made on the meta
    device, so it costs no memory until then).
    """

    def __init__(self, accelerator: Accelerator, model: MultiTaskT5):
        self.accelerator = accelerator
        sharded = is_fsdp(accelerator) or is_deepspeed(accelerator)
        self.template = _meta_copy(model) if sharded and accelerator.is_main_process else None

    def __call__(self, prepared: nn.Module) -> MultiTaskT5 | None:
        module = self.accelerator.unwrap_model(prepared)
        if is_fsdp(self.accelerator):
            weights = get_model_state_dict(prepared, options=GATHER)  # a collective: every rank calls it
        elif is_deepspeed(self.accelerator) and any(p.dtype != torch.float32 for p in module.parameters()):
            from deepspeed.utils import safe_get_full_fp32_param

            # a frozen parameter has no fp32 master copy (DeepSpeed returns None): its own value is the weight
            weights = {name: (full.cpu() if (full := safe_get_full_fp32_param(p)) is not None else p.detach().float().cpu())
                       for name, p in module.named_parameters()}
        else:
            return module if self.accelerator.is_main_process else None
        if self.template is None:
            return None
        model = copy.deepcopy(self.template)
        model.load_state_dict(weights, strict=False, assign=True)
        model.base.tie_weights()  # tied names: one tensor again (assign=True, or named once in `weights`)
        missing = [name for name, p in model.named_parameters() if p.is_meta]
        if missing:
            raise RuntimeError(f"no gathered weights for {missing}")
        return model


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters are on the meta device (shared parameters stay shared)."""
    memo: dict[int, Any] = {}
    for parameter in model.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"), parameter.requires_grad)
    return copy.deepcopy(model, memo)


def _raw(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    # accelerate's wrapper would route the state-dict helpers' dummy step through a grad scaler
    return getattr(optimizer, "optimizer", optimizer)


def optimizer_state(accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict | None:
    """The full optimizer state keyed by parameter names (on the main process; a collective under FSDP).
    None under DeepSpeed, whose engine saves its partitions itself (:func:`save_engine_state`)."""
    if is_deepspeed(accelerator):
        return None
    return get_optimizer_state_dict(model, _raw(optimizer), options=GATHER)


def load_optimizer_state(accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer,
                         state: dict[str, Any] | None, directory: Path) -> None:
    """Load what :func:`optimizer_state` / :func:`save_engine_state` saved in checkpoint ``directory``."""
    if is_deepspeed(accelerator):
        if not (directory / DEEPSPEED_DIR).is_dir():
            raise InputError(f"{directory} holds no DeepSpeed state: a run resumes under DeepSpeed only from "
                             "checkpoints written under DeepSpeed (with as many processes)")
        model.load_checkpoint(str(directory / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, load_optimizer_states=True,
                              load_lr_scheduler_states=False)
        return
    if state is None:
        raise InputError(f"{directory} was written under DeepSpeed: resume it under DeepSpeed")
    set_optimizer_state_dict(model, _raw(optimizer), state, options=StateDictOptions(full_state_dict=True))


def save_engine_state(accelerator: Accelerator, model: nn.Module, directory: Path) -> None:
    """Under DeepSpeed (every rank): the engine's partitioned optimizer state into ``directory/deepspeed``."""
    if is_deepspeed(accelerator):
        model.save_checkpoint(str(directory / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, save_latest=False)
