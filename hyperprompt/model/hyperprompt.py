"""HyperPrompt (He et al., ICML 2022): hypernetwork-generated hyper-prompts in T5's self-attention.

Symbols follow the paper (``docs/method.md``):

- global prompts ``P_tau`` [l, d_model], one per task and stack (encoder, decoder);
- local hypernetworks per layer m, for keys and for values:
  ``P^m_{tau,k} = U^m_k ReLU(D^m_k P_tau)`` with ``D: d_model -> b`` and ``U: b -> h*d_kv``;
- variants: *share* (one (D, U) per layer, all tasks), *sep* (one per task and layer),
  *global* ((D, U) generated from the layer-aware task embedding ``I^m_tau = h_t([k_tau; z_m])``
  by the linear global hypernetworks ``W^D``, ``W^U``, shared over tasks, layers and stacks).

Prompts depend on (task, layer) only: each forward computes them for the tasks present (all layers
at once, k and v together), and the attention function gathers each example's rows. In inference
(no grad) the all-task prompts are cached until a weight changes or training resumes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from hyperprompt.model.attention import PromptState
from hyperprompt.model.base import MultiTaskT5
from hyperprompt.model.config import HyperPromptConfig

STACKS = ("encoder", "decoder")


class HyperPromptGenerator(nn.Module):
    """All of HyperPrompt's added parameters, and the prompt computation.

    Args:
        config: the method config (variant, prompt lengths, sizes).
        d_model, num_heads, d_kv: backbone widths; prompts have width ``num_heads * d_kv``.
        num_layers: ``{"encoder": M_enc, "decoder": M_dec}``.
    """

    def __init__(self, config: HyperPromptConfig, d_model: int, num_heads: int, d_kv: int,
                 num_layers: dict[str, int]):
        super().__init__()
        self.config = config
        self.d_model, self.num_heads, self.d_kv = d_model, num_heads, d_kv
        self.bottleneck = config.resolved_bottleneck(d_model)
        self.prompt_lengths = {
            stack: length
            for stack, length, used in (
                ("encoder", config.encoder_prompt_length, config.uses_encoder()),
                ("decoder", config.decoder_prompt_length, config.uses_decoder()),
            )
            if used
        }
        self.num_layers = {stack: num_layers[stack] for stack in self.prompt_lengths}
        T, d, b, y = config.num_tasks, d_model, self.bottleneck, num_heads * d_kv

        # P_tau: one global prompt per task and stack.
        self.prompts = nn.ParameterDict({
            stack: nn.Parameter(torch.empty(T, length, d)) for stack, length in self.prompt_lengths.items()
        })
        if config.variant == "share":
            # (D^m, U^m) for k and v (dim 1), per layer m, shared by the tasks.
            self.down = nn.ParameterDict({s: nn.Parameter(torch.empty(m, 2, b, d)) for s, m in self.num_layers.items()})
            self.up = nn.ParameterDict({s: nn.Parameter(torch.empty(m, 2, y, b)) for s, m in self.num_layers.items()})
        elif config.variant == "sep":
            self.down = nn.ParameterDict({s: nn.Parameter(torch.empty(T, m, 2, b, d)) for s, m in self.num_layers.items()})
            self.up = nn.ParameterDict({s: nn.Parameter(torch.empty(T, m, 2, y, b)) for s, m in self.num_layers.items()})
        else:
            t_in, t, e = config.task_embedding_dim, config.layer_task_embedding_dim, config.task_hidden_dim
            self.task_embedding = nn.Parameter(torch.empty(T, t_in))  # k_tau
            self.layer_embedding = nn.Parameter(torch.empty(sum(self.num_layers.values()), t_in))  # z_m
            self.task_mlp = nn.Sequential(nn.Linear(2 * t_in, e), nn.ReLU(), nn.Linear(e, t))  # h_t
            if config.normalize_layer_task_embedding:
                self.task_mlp.append(nn.LayerNorm(t, elementwise_affine=False))
            self.generator_multiplier = 1.0 / t if config.scale_generators else 1.0
            self.down_generator = nn.Parameter(torch.empty(2, t, b * d))  # W^{D_k}, W^{D_v} (as [t, b*d])
            self.up_generator = nn.Parameter(torch.empty(2, t, y * b))  # W^{U_k}, W^{U_v}
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Variance-preserving init: D P has unit-scale entries, U ReLU(.) entries of std
        ``hypernetwork_init_scale``. For Global, the *generated* D and U get those statistics
        (h_t keeps unit variance; W^D, W^U are scaled by 1/sqrt(t))."""
        cfg = self.config
        d, b = self.d_model, self.bottleneck
        down_std = d ** -0.5
        up_std = cfg.hypernetwork_init_scale * math.sqrt(2.0 / b)  # ReLU halves the second moment
        for prompt in self.prompts.values():
            nn.init.normal_(prompt, std=cfg.prompt_init_std)
        if cfg.variant in ("share", "sep"):
            for p in self.down.values():
                nn.init.normal_(p, std=down_std)
            for p in self.up.values():
                nn.init.normal_(p, std=up_std)
        else:
            t_in, t, e = cfg.task_embedding_dim, cfg.layer_task_embedding_dim, cfg.task_hidden_dim
            nn.init.normal_(self.task_embedding)
            nn.init.normal_(self.layer_embedding)
            first, last = self.task_mlp[0], self.task_mlp[2]
            nn.init.normal_(first.weight, std=(2 * t_in) ** -0.5)
            nn.init.normal_(last.weight, std=math.sqrt(2.0 / e))
            nn.init.zeros_(first.bias)
            nn.init.zeros_(last.bias)
            # generated D = multiplier * W^D I with |I|^2 ~ t: std(D) = multiplier * std(W^D) * sqrt(t)
            generator_std = 1.0 / (self.generator_multiplier * math.sqrt(t))
            nn.init.normal_(self.down_generator, std=down_std * generator_std)
            nn.init.normal_(self.up_generator, std=up_std * generator_std)

    def per_task_parameters(self) -> dict[str, nn.Parameter]:
        """Parameters whose first dimension indexes tasks: only task tau's loss may update row tau."""
        params = {f"prompts.{s}": p for s, p in self.prompts.items()}
        if self.config.variant == "sep":
            params.update({f"down.{s}": p for s, p in self.down.items()})
            params.update({f"up.{s}": p for s, p in self.up.items()})
        if self.config.variant == "global":
            params["task_embedding"] = self.task_embedding
        return params

    def layer_task_embedding(self, tasks: torch.Tensor) -> torch.Tensor:
        """I^m_tau = h_t([k_tau; z_m]) for the given tasks and every prompted layer: [R, M_total, t]."""
        k = self.task_embedding[tasks]  # [R, t']
        z = self.layer_embedding  # [M_total, t']
        R, M = k.shape[0], z.shape[0]
        pairs = torch.cat([k[:, None, :].expand(R, M, -1), z[None, :, :].expand(R, M, -1)], dim=-1)
        return self.task_mlp(pairs)

    def forward(self, tasks: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hyper-prompts of ``tasks`` (LongTensor [R]) for every prompted layer.

        Returns:
            ``{stack: tensor [M, R, 2, h, l, d_kv]}`` -- per layer, per task row, keys (0) and values (1).
        """
        R, b, d = tasks.shape[0], self.bottleneck, self.d_model
        y = self.num_heads * self.d_kv
        if self.config.variant == "global":
            embedding = self.layer_task_embedding(tasks)  # [R, M_total, t]
        tables, offset = {}, 0
        for stack, M in self.num_layers.items():
            prompt = self.prompts[stack][tasks]  # P_tau: [R, l, d]
            if self.config.variant == "share":
                down = self.down[stack].unsqueeze(0).expand(R, -1, -1, -1, -1)  # [R, M, 2, b, d]
                up = self.up[stack].unsqueeze(0).expand(R, -1, -1, -1, -1)  # [R, M, 2, y, b]
            elif self.config.variant == "sep":
                down, up = self.down[stack][tasks], self.up[stack][tasks]
            else:
                I = embedding[:, offset:offset + M]  # noqa: E741  (the paper's symbol)
                I = I * self.generator_multiplier  # noqa: E741
                down = torch.einsum("rmt,ktx->rmkx", I, self.down_generator).reshape(R, M, 2, b, d)
                up = torch.einsum("rmt,ktx->rmkx", I, self.up_generator).reshape(R, M, 2, y, b)
            offset += M
            hidden = torch.relu(torch.einsum("rld,rmkbd->rmklb", prompt, down))  # ReLU(D P): [R, M, 2, l, b]
            out = torch.einsum("rmklb,rmkyb->rmkly", hidden, up)  # U ReLU(D P): [R, M, 2, l, y]
            l = out.shape[3]  # noqa: E741
            out = out.reshape(R, M, 2, l, self.num_heads, self.d_kv).permute(1, 0, 2, 4, 3, 5)
            tables[stack] = out.contiguous()
        return tables


class HyperPromptModel(MultiTaskT5):
    """A T5 with HyperPrompt: per-task hyper-prompts in every (encoder and/or decoder) self-attention.

    Example::

        base = T5ForConditionalGeneration.from_pretrained("t5-base")
        model = HyperPromptModel.from_base(base, HyperPromptConfig(task_names=["cb", "rte"]))
        out = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=torch.tensor([0, 1]))
        tokens = model.generate(input_ids=ids, attention_mask=mask, task_ids=[0, 1], max_new_tokens=8)
    """

    config_class = HyperPromptConfig
    config: HyperPromptConfig

    def build(self) -> None:
        cfg = self.base.config
        num_layers = {"encoder": len(self.base.encoder.block), "decoder": len(self.base.decoder.block)}
        self.hyperprompt = HyperPromptGenerator(self.config, cfg.d_model, cfg.num_heads, cfg.d_kv, num_layers)
        self.use_prompted_attention()
        self._prompt_cache: tuple[tuple, dict[str, torch.Tensor]] | None = None
        self.hyperprompt.to(device=next(self.base.parameters()).device)

    # --- prompts -----------------------------------------------------------------------------

    def prompt_tables(self, task_ids: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Prompt tables and each example's row in them.

        In training (or with grad), prompts are computed for the distinct tasks of the batch
        (``compute_all_tasks``, or under ``torch.compile``: for every task). Without grad, the all-task tables are cached until
        a hypernetwork weight changes (tracked by tensor versions) or ``train()`` is called.
        """
        if not torch.is_grad_enabled():
            key = tuple((p.data_ptr(), p._version, p.dtype) for p in self.hyperprompt.parameters())
            if self._prompt_cache is None or self._prompt_cache[0] != key:
                all_tasks = torch.arange(self.config.num_tasks, device=task_ids.device)
                self._prompt_cache = (key, self.hyperprompt(all_tasks))
            return self._prompt_cache[1], task_ids
        if self.config.compute_all_tasks or torch.compiler.is_compiling():  # unique() would break the graph
            all_tasks = torch.arange(self.config.num_tasks, device=task_ids.device)
            return self.hyperprompt(all_tasks), task_ids
        tasks, rows = torch.unique(task_ids, return_inverse=True)
        return self.hyperprompt(tasks), rows

    def task_prompts(self, task: int | str) -> dict[str, torch.Tensor]:
        """The hyper-prompts of one task: ``{stack: [M, 2, h, l, d_kv]}`` (keys 0, values 1)."""
        task_id = self.config.task_id(task) if isinstance(task, str) else int(task)
        tables = self.hyperprompt(torch.tensor([task_id], device=self._device()))
        return {stack: table[:, 0] for stack, table in tables.items()}

    def conditioning_inputs(self, task_ids: torch.Tensor, inputs: dict[str, Any]) -> dict[str, Any]:
        tables, rows = self.prompt_tables(task_ids)
        return {**inputs, "prompt_state": PromptState(tables), "prompt_row_index": rows}

    def train(self, mode: bool = True) -> HyperPromptModel:
        self._prompt_cache = None
        return super().train(mode)

    hyperprompts_disabled = MultiTaskT5.conditioning_disabled
