"""Tokenising a task's split once, with a cache on disk and a count of truncated examples.

Like seqio's ``append_eos_after_trim``: a text is tokenised without special tokens, cut to
``max_length - 1`` tokens, and EOS is appended, so every sequence ends with EOS even when truncated.

The cache file is keyed by everything the token ids depend on: the tokenizer (class, name and a hash
of its full definition), the task name and version, :data:`PREPROCESSOR_VERSION`, the split, both
lengths, and a hash of the examples' ``inputs`` and ``targets`` (so edited data files, another
``prefix`` or a changed template never hit a stale cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyperprompt.data.glue import PREPROCESSOR_VERSION
from hyperprompt.data.task import Example, Task
from hyperprompt.errors import InputError

logger = logging.getLogger(__name__)

_CHUNK = 2048  # texts per tokenizer call


@dataclass
class EncodedSplit:
    """A tokenised split: ``input_ids[i]`` / ``labels[i]`` (int32 arrays ending with EOS) of
    ``examples[i]``, the gold examples kept for evaluation."""

    task: str
    split: str
    examples: list[Example]
    input_ids: list[np.ndarray]
    labels: list[np.ndarray]
    max_input_length: int
    max_target_length: int
    num_truncated_inputs: int
    num_truncated_targets: int
    cache_path: Path | None = None
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.examples)

    def __repr__(self) -> str:
        return (
            f"EncodedSplit({self.task!r}, {self.split!r}, {len(self)} examples, "
            f"truncated inputs={self.num_truncated_inputs}, targets={self.num_truncated_targets})"
        )

    def feature(self, index: int, task_id: int) -> dict[str, Any]:
        """Example ``index`` in the form :class:`~hyperprompt.data.Seq2SeqCollator` takes."""
        return {"input_ids": self.input_ids[index], "labels": self.labels[index], "task_id": task_id}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides the token ids: class, vocabulary / full definition, EOS id -- the content, not
    where it was loaded from (a run's tokenizer reloaded from ``OUT/tokenizer`` hashes as the original)."""
    digest = hashlib.sha256()
    digest.update(f"{type(tokenizer).__name__}|".encode())
    digest.update(f"eos={tokenizer.eos_token_id}|".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()


def _read_cache(cache_path: Path, task: Task, split: str, examples: list, lengths: tuple[int, int]
                ) -> EncodedSplit | None:
    """The cached encoding, or None if it does not match the examples; raises on a damaged file."""
    with np.load(cache_path) as cached:
        if len(cached["input_offsets"]) != len(examples) + 1:
            return None
        return EncodedSplit(task.name, split, examples, _unpack(cached["input_ids"], cached["input_offsets"]),
                            _unpack(cached["labels"], cached["label_offsets"]), *lengths,
                            int(cached["num_truncated"][0]), int(cached["num_truncated"][1]), cache_path,
                            from_cache=True)


def _is_byt5(tokenizer: Any) -> bool:
    return type(tokenizer).__name__ == "ByT5Tokenizer" and getattr(tokenizer, "offset", None) == 3


def tokenize_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]] | list[np.ndarray]:
    """Token ids of each text, without special tokens, tokenised in batches."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast (Rust) tokenizer: batch-encode directly
        encodings = backend.encode_batch(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]
    if _is_byt5(tokenizer):  # ByT5 maps byte b to id b + 3; texts naming special tokens go the slow way
        special = re.compile("|".join(re.escape(t) for t in tokenizer.all_special_tokens + ["<extra_id_"]))
        ids: list[Any] = []
        for text in texts:
            if special.search(text):
                ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
            else:
                ids.append(np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) + 3)
        return ids
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def _truncate_with_eos(
    ids: Sequence[int] | np.ndarray, max_length: int, eos_id: int
) -> tuple[np.ndarray, bool]:
    ids = np.asarray(ids, dtype=np.int32)
    truncated = len(ids) > max_length - 1
    return np.append(ids[: max_length - 1], np.int32(eos_id)).astype(np.int32), truncated


# Pre-tokenizers that split words at whitespace: each word is tokenised on its own, so a text cut
# just before a whitespace character gives the same leading tokens as the whole text.
_WORD_SPLITTING = {"Metaspace", "WhitespaceSplit", "Whitespace", "BertPreTokenizer", "ByteLevel"}


def splits_at_whitespace(tokenizer: Any) -> bool:
    """Whether cutting a text before a whitespace character leaves its leading tokens unchanged."""
    if _is_byt5(tokenizer):
        return True  # bytes: any prefix of the text is a prefix of the ids
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    pre = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    return any(p.get("type") in _WORD_SPLITTING and p.get("split", True) for p in parts)


def _head(text: str, budget: int) -> str:
    """``text`` cut before the last run of spaces within its first ``budget`` characters, so that the
    head ends with a whole word (a cut inside a run of spaces would differ after space-collapsing
    normalisers such as T5's)."""
    if len(text) <= budget:
        return text
    cut = text.rfind(" ", 0, budget)
    while cut > 0 and text[cut - 1].isspace():
        cut -= 1
    return text[:cut] if cut > 0 else text


def _encode(
    tokenizer: Any, texts: Sequence[str], max_length: int, cut_long_texts: bool = True
) -> tuple[list[np.ndarray], int]:
    """Token ids cut to ``max_length - 1`` plus EOS, and the number of texts that were cut.

    Long texts are first tokenised from a head of ``4 * max_length`` characters (cut at whitespace,
    for tokenizers where that is exact); only when the head gives too few tokens is the whole text
    tokenised. The result is identical, and long passages (MultiRC, BoolQ) tokenise many times faster.
    """
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise InputError("the tokenizer has no EOS token; T5 needs one")
    limit = max_length - 1
    budget = 4 * max_length if cut_long_texts and splits_at_whitespace(tokenizer) else None
    sequences, n_truncated = [], 0
    for start in range(0, len(texts), _CHUNK):
        chunk = texts[start : start + _CHUNK]
        heads = [_head(text, budget) for text in chunk] if budget else list(chunk)
        ids = list(tokenize_texts(tokenizer, heads))
        short = [
            i
            for i, (head, text) in enumerate(zip(heads, chunk, strict=True))
            if len(ids[i]) <= limit and head is not text
        ]
        for i, full in zip(short, tokenize_texts(tokenizer, [chunk[i] for i in short]), strict=True):
            ids[i] = full
        for sequence_ids in ids:
            sequence, truncated = _truncate_with_eos(sequence_ids, max_length, eos_id)
            sequences.append(sequence)
            n_truncated += truncated
    return sequences, n_truncated


def _cache_key(
    task: Task, split: str, tokenizer: Any, examples: list[Example], lengths: tuple[int, int]
) -> str:
    digest = hashlib.sha256()
    header = [
        tokenizer_fingerprint(tokenizer),
        task.name,
        task.version,
        PREPROCESSOR_VERSION,
        split,
        *lengths,
    ]
    digest.update(json.dumps(header).encode())
    for example in examples:
        digest.update(example["inputs"].encode())
        digest.update(b"\x00")
        digest.update(example["targets"].encode())
        digest.update(b"\x01")
    return digest.hexdigest()


def _pack(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sequences], out=offsets[1:])
    flat = np.concatenate(sequences) if sequences else np.zeros(0, dtype=np.int32)
    return flat.astype(np.int32), offsets


def _unpack(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, offsets[1:-1]) if len(offsets) > 1 else []


def encode_task(
    task: Task,
    split: str,
    tokenizer: Any,
    max_input_length: int = 512,
    max_target_length: int = 32,
    cache_dir: str | Path | None = None,
) -> EncodedSplit:
    """Tokenise ``task``'s ``split``.

    Args:
        task: the task.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        tokenizer: a Hugging Face tokenizer with an EOS token (T5's, ByT5's, or :func:`train_tokenizer`'s).
        max_input_length: input tokens including EOS; longer inputs are cut (and counted).
        max_target_length: target tokens including EOS; longer targets are cut (and counted).
        cache_dir: directory of the on-disk cache; ``None`` disables caching.
    """
    if max_input_length < 2 or max_target_length < 2:
        raise InputError("max lengths must leave room for at least one token and EOS")
    examples = task.load(split)
    lengths = (max_input_length, max_target_length)
    cache_path = None
    if cache_dir is not None:
        key = _cache_key(task, split, tokenizer, examples, lengths)
        safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", task.name)
        cache_path = Path(cache_dir) / f"{safe_name}-{split}-{key[:20]}.npz"
        if cache_path.is_file():
            try:
                cached_split = _read_cache(cache_path, task, split, examples, lengths)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                logger.warning("the tokenisation cache %s is unreadable (%s); tokenising again", cache_path, error)
                cached_split = None
            if cached_split is not None:
                return _log(cached_split)
            logger.warning("ignoring the stale tokenisation cache %s", cache_path)

    input_ids, n_inputs_cut = _encode(tokenizer, [ex["inputs"] for ex in examples], max_input_length)
    labels, n_targets_cut = _encode(tokenizer, [ex["targets"] for ex in examples], max_target_length)
    encoded = EncodedSplit(
        task.name,
        split,
        examples,
        input_ids,
        labels,
        max_input_length,
        max_target_length,
        n_inputs_cut,
        n_targets_cut,
        cache_path,
        from_cache=False,
    )
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        input_flat, input_offsets = _pack(input_ids)
        label_flat, label_offsets = _pack(labels)
        temporary = cache_path.with_name(f"{cache_path.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            temporary,
            input_ids=input_flat,
            input_offsets=input_offsets,
            labels=label_flat,
            label_offsets=label_offsets,
            num_truncated=np.array([n_inputs_cut, n_targets_cut], dtype=np.int64),
        )
        os.replace(temporary, cache_path)  # atomic: a reader never sees half a file
    return _log(encoded)


def _log(encoded: EncodedSplit) -> EncodedSplit:
    logger.info(
        "%s %s: %d examples%s; %d inputs cut to %d tokens, %d targets cut to %d tokens",
        encoded.task,
        encoded.split,
        len(encoded),
        " (cached)" if encoded.from_cache else "",
        encoded.num_truncated_inputs,
        encoded.max_input_length,
        encoded.num_truncated_targets,
        encoded.max_target_length,
    )
    return encoded
