"""Mixture rates and the sampler: determinism, exact resume, sharding."""

from __future__ import annotations

import collections
import itertools
import json

import numpy as np
import pytest

from hyperprompt.data import Mixture, MixtureSampler, get_task, mixing_rates, synthetic_tasks


def take(sampler, n):
    return list(itertools.islice(sampler, n))


def test_rates_equal_hand_computed_values():
    sizes = [1000, 100, 10]
    assert mixing_rates(sizes) == pytest.approx([1000 / 1110, 100 / 1110, 10 / 1110])
    # T5's cap: min(n, cap).
    assert mixing_rates(sizes, cap=50) == pytest.approx([50 / 110, 50 / 110, 10 / 110])
    # Temperature 2: sqrt of the (capped) sizes.
    root = [np.sqrt(1000), 10.0, np.sqrt(10)]
    assert mixing_rates(sizes, "temperature", temperature=2.0) == pytest.approx([r / sum(root) for r in root])
    capped_root = [np.sqrt(500), 10.0, np.sqrt(10)]
    expected = [r / sum(capped_root) for r in capped_root]
    assert mixing_rates(sizes, "temperature", cap=500, temperature=2.0) == pytest.approx(expected)
    assert mixing_rates(sizes, "equal") == pytest.approx([1 / 3] * 3)
    with pytest.raises(ValueError, match="temperature"):
        mixing_rates(sizes, "proportional", temperature=2.0)


def test_mixture_of_real_tasks(data_dir):
    tasks = [get_task(name, data_dir=data_dir) for name in ("cb", "copa", "superglue/rte")]
    mixture = Mixture(tasks)
    assert mixture.sizes == [250, 400, 2490]
    assert mixture.rates == pytest.approx([250 / 3140, 400 / 3140, 2490 / 3140])
    assert mixture.task_id("superglue/copa") == 1
    capped = Mixture(tasks, cap=300)
    assert capped.rates == pytest.approx([250 / 850, 300 / 850, 300 / 850])


def test_synthetic_mixture_sizes_differ():
    tasks = synthetic_tasks(seed=0, register=False)
    assert Mixture(tasks).sizes == [2000, 1000, 500, 250]


def test_sampler_is_deterministic_and_follows_rates():
    make = lambda seed: MixtureSampler([50, 30, 20], [0.5, 0.3, 0.2], batch_size=8, seed=seed)  # noqa: E731
    first, again, other = take(make(0), 500), take(make(0), 500), take(make(1), 500)
    assert first == again and first != other
    counts = collections.Counter(task for batch in first for task, _ in batch)
    frequencies = np.array([counts[t] for t in range(3)]) / 4000
    assert frequencies == pytest.approx([0.5, 0.3, 0.2], abs=0.03)


def test_each_epoch_visits_every_example_once():
    sampler = MixtureSampler([7, 5], [0.5, 0.5], batch_size=4, seed=3)
    seen = collections.defaultdict(list)
    for batch in take(sampler, 60):
        for task, index in batch:
            seen[task].append(index)
    for task, size in ((0, 7), (1, 5)):
        full_epochs = len(seen[task]) // size
        assert full_epochs >= 3
        for epoch in range(full_epochs):
            assert sorted(seen[task][epoch * size : (epoch + 1) * size]) == list(range(size))
    assert seen[0][:7] != seen[0][7:14]  # reshuffled every epoch


def test_resume_is_exact():
    sampler = MixtureSampler([13, 8, 3], [0.6, 0.3, 0.1], batch_size=5, seed=7)
    take(sampler, 37)
    state = json.loads(json.dumps(sampler.state_dict()))  # survives a JSON checkpoint
    expected = take(sampler, 50)
    resumed = MixtureSampler([13, 8, 3], [0.6, 0.3, 0.1], batch_size=5, seed=7)
    resumed.load_state_dict(state)
    assert take(resumed, 50) == expected


def test_resume_checks_the_configuration():
    state = MixtureSampler([13, 8], [0.5, 0.5], batch_size=4, seed=0).state_dict()
    with pytest.raises(ValueError, match="seed"):
        MixtureSampler([13, 8], [0.5, 0.5], batch_size=4, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="global_batch_size"):
        MixtureSampler([13, 8], [0.5, 0.5], batch_size=8, seed=0).load_state_dict(state)


@pytest.mark.parametrize("mixed", [True, False])
def test_sharded_ranks_together_equal_one_process(mixed):
    sizes, rates = [40, 25, 9], [0.5, 0.3, 0.2]
    single = take(MixtureSampler(sizes, rates, batch_size=12, seed=5, mixed=mixed), 30)
    ranks = [
        take(MixtureSampler(sizes, rates, batch_size=4, seed=5, mixed=mixed, num_replicas=3, rank=r), 30)
        for r in range(3)
    ]
    for step in range(30):
        assert ranks[0][step] + ranks[1][step] + ranks[2][step] == single[step]


def test_sharded_resume_matches():
    sizes, rates = [40, 25], [0.5, 0.5]
    rank1 = MixtureSampler(sizes, rates, batch_size=4, seed=5, num_replicas=2, rank=1)
    take(rank1, 11)
    state = rank1.state_dict()
    expected = take(rank1, 5)
    fresh = MixtureSampler(sizes, rates, batch_size=4, seed=5, num_replicas=2, rank=1)
    fresh.load_state_dict(state)
    assert take(fresh, 5) == expected


def test_single_task_batches():
    sampler = MixtureSampler([40, 25, 9], [0.5, 0.3, 0.2], batch_size=6, seed=2, mixed=False)
    batches = take(sampler, 200)
    assert all(len({task for task, _ in batch}) == 1 for batch in batches)
    assert {batch[0][0] for batch in batches} == {0, 1, 2}


def test_zero_rate_task_is_never_sampled():
    batches = take(MixtureSampler([10, 10], [1.0, 0.0], batch_size=4, seed=0), 50)
    assert {task for batch in batches for task, _ in batch} == {0}
