"""What a run tells: JSON-lines logs, TensorBoard, the progress bar and the throughput of each log window."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


class RunLog:
    """``train_log.jsonl`` / ``metrics.jsonl`` / ``tensorboard/`` of a run (written by the main process only),
    a progress bar, and the training throughput measured without evaluation and checkpointing time.

    On resume at ``step`` the JSON-lines logs lose the lines after ``step`` (they are logged again) and
    TensorBoard purges them.
    """

    def __init__(self, out: Path, main: bool, step: int, max_steps: int, batch_size: int, log_every: int,
                 started: float | None = None):
        self.out, self.main, self.max_steps, self.batch_size, self.log_every = out, main, max_steps, batch_size, log_every
        self.writer = None
        if main:
            for name in ("metrics.jsonl", "train_log.jsonl"):
                truncate_jsonl(out / name, step)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=step + 1 if step else None)
        self.bar = tqdm(total=max_steps, initial=step, desc="train", dynamic_ncols=True,
                        disable=not (main and sys.stderr.isatty()))
        self.started, self.loop_started = started or time.time(), time.time()
        self.train_steps, self.paused_total = 0, 0.0
        self._window()

    def _window(self) -> None:
        self.window_start, self.window_paused, self.window_steps, self.window_loss = time.time(), 0.0, 0, 0.0

    def say(self, message: str) -> None:
        if self.main:
            tqdm.write(message)

    def jsonl(self, name: str, record: dict[str, Any]) -> None:
        if self.main:
            with open(self.out / name, "a") as f:
                f.write(json.dumps(record) + "\n")

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def paused(self, seconds: float) -> None:
        """Time spent on evaluation / checkpoints, excluded from the throughput."""
        self.window_paused += seconds
        self.paused_total += seconds

    def train_step(self, step: int, loss: float, lr: float) -> None:
        """Record a finished optimizer step; every ``log_every`` steps write the window's mean loss."""
        self.train_steps += 1
        self.window_steps += 1
        self.window_loss += loss
        elapsed = time.time() - self.window_start - self.window_paused
        rate = self.window_steps * self.batch_size / max(elapsed, 1e-9)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", ex_s=f"{rate:.1f}", refresh=False)
        if step % self.log_every and step != self.max_steps:
            return
        record = {"step": step, "loss": self.window_loss / self.window_steps, "lr": lr, "examples_per_s": rate}
        self.jsonl("train_log.jsonl", record)
        self.scalars({"train/loss": record["loss"], "train/lr": lr, "train/examples_per_s": rate}, step)
        if self.bar.disable:
            eta = (self.max_steps - step) * elapsed / self.window_steps
            self.say(f"step {step}/{self.max_steps} | loss {record['loss']:.4f} | lr {lr:.2e} | "
                     f"{rate:.1f} ex/s | eta {format_duration(eta)}")
        self._window()

    def evaluation(self, step: int, results: dict[str, Any]) -> None:
        self.jsonl("metrics.jsonl", {"step": step, "examples_seen": step * self.batch_size, **results})
        values = {"eval/average": results["average"]}
        for name, result in results["tasks"].items():
            values[f"eval/{name}/score"] = result["score"]
            values.update({f"eval/{name}/{metric}": value for metric, value in result["metrics"].items()})
        self.scalars(values, step)

    def timing(self) -> dict[str, float]:
        """This session's steps, training seconds (without evaluation / checkpoints) and wall seconds."""
        return {"steps": self.train_steps, "train_seconds": time.time() - self.loop_started - self.paused_total,
                "wall_seconds": time.time() - self.started}

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines logged after ``step`` (a resumed run logs them again)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
