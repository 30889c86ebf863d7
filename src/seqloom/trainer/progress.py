"""Progress output in fairseq's formats (``--log-format simple|json|tqdm|none``) plus TensorBoard and
Weights & Biases (``--wandb-project``).

* simple, a log interval: ``epoch 001:     10 / 78 loss=9.9, nll_loss=9.8, ...``;
  a summary: ``epoch 001 | valid on 'valid' subset | loss 8.368 | nll_loss 7.872 | ...``
* json, a log interval: ``{"epoch": 1, "update": 0.128, "loss": "9.9", ...}``;
  a summary: ``{"epoch": 1, "valid_loss": "8.368", ...}`` (keys prefixed with the tag)

Lines go through the logger named by the tag (``train_inner``, ``train``, ``valid``), as fairseq's do.
TensorBoard gets one folder per tag; Weights & Biases gets each number as ``{tag}/{key}`` at the update
number, as fairseq logs them (``wandb`` is optional: without it, a warning and plain logs).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from seqloom.trainer.meters import format_stat

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

logger = logging.getLogger(__name__)

BAR_STATS = ("loss", "ppl", "wps", "lr")  # shown beside a tqdm bar


class _WandbConfig(Protocol):
    def update(self, values: dict[str, object]) -> object: ...


class _Wandb(Protocol):
    """The part of the ``wandb`` module that the progress output uses."""

    @property
    def config(self) -> _WandbConfig: ...

    def log(self, data: Mapping[str, object], step: int | None = None) -> object: ...


def resolve_log_format(log_format: str | None, *, no_progress_bar: bool = False) -> str:
    """fairseq's default: tqdm on a terminal, simple otherwise (or with --no-progress-bar)."""
    fmt = log_format or ("simple" if no_progress_bar else "tqdm")
    if fmt == "tqdm" and not sys.stderr.isatty():
        fmt = "simple"
    return fmt


class Progress:
    """Writes interval logs and summaries of one run; ``enabled`` False (non-zero ranks) writes nothing."""

    def __init__(
        self,
        log_format: str,
        *,
        tensorboard_logdir: str | None = None,
        wandb_project: str | None = None,
        wandb_run_name: str | None = None,
        enabled: bool = True,
    ) -> None:
        self.format = log_format
        self.enabled = enabled
        self.tensorboard_logdir = tensorboard_logdir if enabled else None
        self._writers: dict[str, SummaryWriter] = {}
        self._bar: tqdm | None = None
        self._wandb: _Wandb | None = None
        self.max_update = 0  # --max-update: the tqdm bar then also says the update and the run's time left
        self._first_log: tuple[float, int] | None = None  # (time, update) of the first interval logged
        if wandb_project and enabled:
            try:
                import wandb
            except ImportError:
                logger.warning(
                    "--wandb-project: the wandb package is missing (pip install wandb); logging to Weights and Biases is off"
                )
            else:
                # reinit=False: a second Progress of this process (or a caller's own init) logs to the same run
                wandb.init(project=wandb_project, reinit=False, name=wandb_run_name)
                self._wandb = wandb

    def update_config(self, config: Mapping[str, object]) -> None:
        """Records the run's options with the run (Weights & Biases' config, as fairseq's training does)."""
        if self._wandb is not None:
            self._wandb.config.update(dict(config))

    def log(self, stats: Mapping[str, object], *, tag: str, step: int, epoch: int, i: int, size: int) -> None:
        """One log interval (``i`` batches of ``size`` done in ``epoch``)."""
        if not self.enabled:
            return
        self._tensorboard(stats, tag, step)
        self._log_wandb(stats, tag, step)
        if self.format == "json":
            update = round(epoch - 1 + i / max(size, 1), 3)
            row = {"epoch": epoch, "update": update, **{k: format_stat(v) for k, v in stats.items()}}
            logging.getLogger(tag).info(json.dumps(row))
        elif self.format == "simple":
            body = ", ".join(f"{k}={format_stat(v)}" for k, v in stats.items())
            logging.getLogger(tag).info("epoch %03d: %6d / %d %s", epoch, i, size, body)
        elif self.format == "tqdm":
            bar = self._tqdm(epoch, size)
            # the few figures that fit beside the bar (all of them squeezed it to nothing); the log has the rest
            shown = {k: format_stat(stats[k]) for k in BAR_STATS if k in stats}
            bar.set_postfix(shown or {k: format_stat(v) for k, v in stats.items()}, refresh=False)
            if self.max_update > 0:
                bar.set_description(f"epoch {epoch:03d} | update {step}/{self.max_update}{self._run_left(step)}",
                                    refresh=False)  # fmt: skip

    def _run_left(self, step: int) -> str:
        """``, 2:05 left`` until --max-update at the pace since the first logged interval ("" before a pace)."""
        now = time.monotonic()
        if self._first_log is None or step <= self._first_log[1]:
            self._first_log = self._first_log or (now, step)
            return ""
        start, first = self._first_log
        seconds = int((now - start) / (step - first) * max(self.max_update - step, 0))
        return f", {seconds // 60}:{seconds % 60:02d} left"

    def advance(self, epoch: int, size: int, n: int = 1) -> None:
        """Moves the tqdm bar (other formats ignore it)."""
        if self.enabled and self.format == "tqdm":
            self._tqdm(epoch, size).update(n)

    def print(
        self, stats: Mapping[str, object], *, tag: str, step: int | None, epoch: int | None, prefix: str = ""
    ) -> None:
        """A summary (end of epoch, validation): every format except ``none`` prints it."""
        if not self.enabled:
            return
        self.close_bar()
        if step is not None:
            self._tensorboard(stats, tag, step)
            self._log_wandb(stats, tag, step)
        if self.format == "json":
            row: dict[str, object] = {} if epoch is None else {"epoch": epoch}
            row.update({f"{tag}_{k}": format_stat(v) for k, v in stats.items()})
            logging.getLogger(tag).info(json.dumps(row))
        elif self.format != "none":
            parts = [] if epoch is None else [f"epoch {epoch:03d}"]
            parts += [prefix] if prefix else []
            parts += [f"{k} {format_stat(v)}" for k, v in stats.items()]
            logging.getLogger(tag).info(" | ".join(parts))

    def _tqdm(self, epoch: int, size: int) -> tqdm:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=size, desc=f"epoch {epoch:03d}", leave=False, file=sys.stderr)
        return self._bar

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _tensorboard(self, stats: Mapping[str, object], tag: str, step: int) -> None:
        if not self.tensorboard_logdir:
            return
        if tag not in self._writers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # as fairseq: a warning, and the run goes on without TensorBoard
                logger.warning(
                    "--tensorboard-logdir: TensorBoard's writer is missing (pip install tensorboard); no TensorBoard logs are written"
                )
                self.tensorboard_logdir = None
                return
            self._writers[tag] = SummaryWriter(f"{self.tensorboard_logdir}/{tag}")
        writer = self._writers[tag]
        for key, value in stats.items():
            if isinstance(value, (int, float)) and key != "num_updates":
                writer.add_scalar(key, value, step)
        writer.flush()

    def _log_wandb(self, stats: Mapping[str, object], tag: str, step: int) -> None:
        if self._wandb is None:
            return
        numbers = {
            f"{tag}/{key}": value
            for key, value in stats.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "num_updates"
        }
        if numbers:
            self._wandb.log(numbers, step=step)

    def close(self) -> None:
        self.close_bar()
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
