"""The data side of hyperprompt: GLUE / SuperGLUE / user / synthetic tasks in T5's text-to-text form,
their official metrics, multi-task mixtures, tokenisation and collation.

>>> from hyperprompt.data import get_task
>>> task = get_task("cb", data_dir="../shared/data")
>>> task.load("validation")[0]["inputs"][:40]
'cb hypothesis: Valence was helping premi'

See docs/data.md.
"""

from hyperprompt.data import glue as _glue  # noqa: F401  (registers the GLUE / SuperGLUE tasks)
from hyperprompt.data.causal import CausalLMCollator, make_collator
from hyperprompt.data.collator import Seq2SeqCollator
from hyperprompt.data.glue import BENCHMARK_TASKS, GLUE_HUB_ID, PREPROCESSOR_VERSION, SUPERGLUE_HUB_ID
from hyperprompt.data.loader import MixtureBatches, eval_batches
from hyperprompt.data.metrics import benchmark_score, task_score
from hyperprompt.data.mixture import Mixture, MixtureSampler, mixing_rates
from hyperprompt.data.sources import DataFormatError
from hyperprompt.data.synthetic import conflict_tasks, synthetic_tasks
from hyperprompt.data.task import Task, get_task, list_tasks, register_task
from hyperprompt.data.task_family import family_tasks
from hyperprompt.data.tokenize import EncodedSplit, encode_task
from hyperprompt.data.tokenizer import train_tokenizer
from hyperprompt.data.user_tasks import load_task_spec

__all__ = [
    "BENCHMARK_TASKS",
    "CausalLMCollator",
    "GLUE_HUB_ID",
    "PREPROCESSOR_VERSION",
    "SUPERGLUE_HUB_ID",
    "DataFormatError",
    "EncodedSplit",
    "Mixture",
    "MixtureBatches",
    "MixtureSampler",
    "Seq2SeqCollator",
    "Task",
    "benchmark_score",
    "conflict_tasks",
    "encode_task",
    "eval_batches",
    "family_tasks",
    "get_task",
    "list_tasks",
    "load_task_spec",
    "make_collator",
    "mixing_rates",
    "register_task",
    "synthetic_tasks",
    "task_score",
    "train_tokenizer",
]
