"""Multi-task mixtures (seqio's ``Mixture``) and a deterministic, resumable batch sampler.

Rates follow T5's ``mixing_rate_num_examples``: a task's rate is its number of training examples,
capped at ``cap``, raised to ``1 / temperature``, then normalised:

    rate_t  ∝  min(n_t, cap) ** (1 / temperature)

``"proportional"`` is temperature 1 (T5's and the paper's choice), ``"temperature"`` uses the given
temperature (T5 tried 2, 4, 8), ``"equal"`` gives every task the same rate.

:class:`MixtureSampler` yields batches of ``(task_id, example_index)`` pairs forever. Every random
draw is a function of ``(seed, step)`` or ``(seed, task, epoch)`` only, so the sampler's state is a
few integers: :meth:`~MixtureSampler.state_dict` / :meth:`~MixtureSampler.load_state_dict` resume
it exactly, and data-parallel ranks agree without communicating.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from hyperprompt.data.task import Task
from hyperprompt.errors import InputError

Batch = list[tuple[int, int]]


def mixing_rates(
    sizes: Sequence[int], rate: str = "proportional", cap: int | None = None, temperature: float = 1.0
) -> list[float]:
    """Normalised sampling rates for tasks with ``sizes`` training examples (see the module doc)."""
    if rate not in ("proportional", "temperature", "equal"):
        raise InputError(f"rate must be 'proportional', 'temperature' or 'equal', not {rate!r}")
    if rate == "proportional" and temperature != 1.0:
        raise InputError(
            "rate='proportional' is temperature 1; use rate='temperature' for another temperature"
        )
    if temperature <= 0:
        raise InputError(f"temperature must be positive, got {temperature}")
    if cap is not None and cap <= 0:
        raise InputError(f"cap must be positive, got {cap}")
    if not sizes or any(n < 0 for n in sizes):
        raise InputError(f"sizes must be non-negative and not empty, got {list(sizes)}")
    if rate == "equal":
        weights = np.array([1.0 if n > 0 else 0.0 for n in sizes])
    else:
        capped = np.array([min(n, cap) if cap is not None else n for n in sizes], dtype=np.float64)
        weights = capped ** (1.0 / temperature)
    if weights.sum() <= 0:
        raise InputError("every task has zero training examples")
    return (weights / weights.sum()).tolist()


class Mixture:
    """Tasks trained together, each with a sampling rate; a task's id is its position in ``tasks``.

    Args:
        tasks: the tasks; their ``"train"`` splits give the sizes (unless ``sizes`` is given).
        rate: ``"proportional"``, ``"temperature"`` or ``"equal"``.
        cap: T5's example cap: a task counts as at most ``cap`` examples (e.g. ``2**19``).
        temperature: for ``rate="temperature"``.
        sizes: training-set sizes to use instead of loading the tasks' ``"train"`` splits.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        rate: str = "proportional",
        cap: int | None = None,
        temperature: float = 1.0,
        sizes: Sequence[int] | None = None,
    ):
        if not tasks:
            raise InputError("a mixture needs at least one task")
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            raise InputError(f"a task appears twice in the mixture: {names}")
        self.tasks = list(tasks)
        self.names = names
        self.sizes = list(sizes) if sizes is not None else [task.num_examples("train") for task in self.tasks]
        if len(self.sizes) != len(self.tasks):
            raise InputError(f"got {len(self.sizes)} sizes for {len(self.tasks)} tasks")
        self.rate, self.cap, self.temperature = rate, cap, temperature
        self.rates = mixing_rates(self.sizes, rate, cap, temperature)

    def __repr__(self) -> str:
        rates = ", ".join(f"{n}: {r:.4f}" for n, r in zip(self.names, self.rates, strict=True))
        return f"Mixture({rates})"

    def task_id(self, name: str) -> int:
        """The id (position) of the task called ``name``."""
        if name not in self.names:
            raise InputError(f"{name!r} is not in the mixture {self.names}")
        return self.names.index(name)

    def sampler(
        self, batch_size: int, seed: int = 0, *, mixed: bool = True, num_replicas: int = 1, rank: int = 0
    ) -> MixtureSampler:
        """A :class:`MixtureSampler` over this mixture's training sets."""
        return MixtureSampler(
            self.sizes, self.rates, batch_size, seed, mixed=mixed, num_replicas=num_replicas, rank=rank
        )


class MixtureSampler:
    """An infinite, deterministic iterator of batches of ``(task_id, example_index)``.

    Global batch ``step`` (``batch_size * num_replicas`` examples) is drawn as follows:

    - mixed batches (default): each example's task is drawn independently from ``rates``;
      single-task batches (``mixed=False``): one task is drawn for the whole global batch;
    - within a task, examples come in a fresh random order every epoch (a permutation seeded by
      ``(seed, task, epoch)``), so each epoch of a task visits every example exactly once.

    Rank ``r`` of ``num_replicas`` gets the slice ``[r * batch_size, (r + 1) * batch_size)`` of each
    global batch, so the union over ranks is exactly what one process with ``batch_size *
    num_replicas`` would see. (With ``mixed=False`` every rank gets the same task.)

    ``state_dict()`` is the position (step, and the epoch / offset of every task); a sampler given
    that state by ``load_state_dict()`` yields exactly the batches the original would have yielded.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        rates: Sequence[float],
        batch_size: int,
        seed: int = 0,
        *,
        mixed: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if len(sizes) != len(rates) or not sizes:
            raise InputError(f"need one rate per task: {len(sizes)} sizes, {len(rates)} rates")
        if batch_size <= 0 or num_replicas <= 0 or not 0 <= rank < num_replicas:
            raise InputError(f"bad batch_size={batch_size}, num_replicas={num_replicas}, rank={rank}")
        rates_array = np.asarray(rates, dtype=np.float64)
        if (rates_array < 0).any() or rates_array.sum() <= 0:
            raise InputError(f"rates must be non-negative and not all zero, got {list(rates)}")
        for n, r in zip(sizes, rates_array, strict=True):
            if r > 0 and n <= 0:
                raise InputError("a task with a positive rate has no examples")
        self.sizes = [int(n) for n in sizes]
        self.rates = (rates_array / rates_array.sum()).tolist()
        self.batch_size, self.seed, self.mixed = batch_size, seed, mixed
        self.num_replicas, self.rank = num_replicas, rank
        self.step = 0
        self.epochs = [0] * len(sizes)
        self.offsets = [0] * len(sizes)
        self._orders: dict[int, tuple[int, np.ndarray]] = {}  # task -> (epoch, permutation)

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.num_replicas

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        rng = np.random.default_rng([self.seed, 0, self.step])
        n_tasks = len(self.sizes)
        if self.mixed:
            task_ids = rng.choice(n_tasks, size=self.global_batch_size, p=self.rates)
        else:
            task_ids = np.full(self.global_batch_size, rng.choice(n_tasks, p=self.rates))
        batch = [(int(t), self._next_index(int(t))) for t in task_ids]
        self.step += 1
        start = self.rank * self.batch_size
        return batch[start : start + self.batch_size]

    def _next_index(self, task: int) -> int:
        epoch = self.epochs[task]
        cached = self._orders.get(task)
        if cached is None or cached[0] != epoch:
            order = np.random.default_rng([self.seed, 1, task, epoch]).permutation(self.sizes[task])
            self._orders[task] = cached = (epoch, order)
        index = int(cached[1][self.offsets[task]])
        self.offsets[task] += 1
        if self.offsets[task] == self.sizes[task]:
            self.epochs[task], self.offsets[task] = epoch + 1, 0
        return index

    def state_dict(self) -> dict[str, Any]:
        """The sampler's position, plus what it was built with (checked on load). JSON-serialisable."""
        return {
            "step": self.step,
            "epochs": list(self.epochs),
            "offsets": list(self.offsets),
            "sizes": list(self.sizes),
            "rates": list(self.rates),
            "global_batch_size": self.global_batch_size,
            "seed": self.seed,
            "mixed": self.mixed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``. The sampler must be built with the same sizes, rates, seed,
        mixing and global batch size (the split of the global batch over ranks may differ)."""
        mine = self.state_dict()
        for key in ("sizes", "global_batch_size", "seed", "mixed"):
            if state[key] != mine[key]:
                raise InputError(f"sampler state has {key}={state[key]!r}, this sampler has {mine[key]!r}")
        if not np.allclose(state["rates"], mine["rates"], rtol=0, atol=1e-12):
            raise InputError(f"sampler state has rates {state['rates']}, this sampler has {mine['rates']}")
        self.step = int(state["step"])
        self.epochs = [int(e) for e in state["epochs"]]
        self.offsets = [int(o) for o in state["offsets"]]
