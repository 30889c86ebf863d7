"""Logging set-up: fairseq's line format (``date | LEVEL | logger | message``) or JSON lines."""

from __future__ import annotations

import json
import logging
import os
import sys

LINE_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record, DATE_FORMAT),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            },
            ensure_ascii=False,
        )


class BarAwareHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records to the stream; while a tqdm progress bar is shown there, above the bar (tqdm.write clears
    it, writes the line and redraws it) instead of running into it on the same line."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm_module = sys.modules.get("tqdm")  # no bar can be shown before tqdm is imported
        bars = getattr(getattr(tqdm_module, "tqdm", None), "_instances", None)
        if not bars:
            super().emit(record)
            return
        try:
            tqdm_module.tqdm.write(self.format(record), file=self.stream)  # type: ignore[union-attr]
            self.flush()
        except Exception:
            self.handleError(record)


def setup_logging(log_format: str | None = None, log_file: str | None = None) -> None:
    """Configures the root logger once per process (stderr, plus ``log_file`` when given)."""
    formatter: logging.Formatter = (
        JsonFormatter() if log_format == "json" else logging.Formatter(LINE_FORMAT, DATE_FORMAT)
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handlers: list[logging.Handler] = [BarAwareHandler(sys.stderr)]
    if log_file:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as err:
            from seqloom.paths import unwritable_reason

            raise SystemExit(f"--log-file {log_file}: cannot be written ({unwritable_reason(log_file, err)})") from None
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(os.environ.get("LOGLEVEL", "INFO").upper())
