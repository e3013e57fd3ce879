"""What a training run shows while it runs: one INFO line per epoch, and a tqdm bar on a terminal.

The line goes to the logger the loop hands in (``training.train``), whatever the bar does, so
Airflow's task log and a terminal both get every epoch.
"""

from __future__ import annotations

import logging
import sys

from training.config import TrainConfig


def _bar_enabled(train_config: TrainConfig, is_main: bool) -> bool:
    if not is_main:
        return False
    if train_config.progress is not None:
        return train_config.progress
    return sys.stderr.isatty()


class EpochReport:
    """The epoch lines and bar of one run; only rank 0 (``is_main``) shows anything."""

    def __init__(self, log: logging.Logger, model_name: str, tc: TrainConfig, is_main: bool, first_epoch: int):
        self.log, self.model_name, self.tc, self.is_main = log, model_name, tc, is_main
        self.bar = None
        if _bar_enabled(tc, is_main):
            from tqdm import tqdm

            self.bar = tqdm(total=tc.epochs, initial=first_epoch - 1, unit="epoch", desc=model_name,
                            dynamic_ncols=True)

    def epoch(
        self, epoch: int, train_loss: float, val: dict[str, float] | None, best_val: dict[str, float] | None,
        best_epoch: int, epoch_seconds: float, val_seconds: float, windows: int, steps: int,
        steps_per_epoch: int, cut: bool, run_sequences_per_s: float,
    ) -> None:
        """``windows``: processed by all ranks this epoch; ``run_sequences_per_s``: so far in the run."""
        metric = self.tc.selection_metric
        if self.is_main:
            self._line(epoch, train_loss, val, best_val, best_epoch, epoch_seconds, val_seconds, windows,
                       steps, steps_per_epoch, cut)
        if self.bar is not None:
            self.bar.update(1)
            postfix = {"loss": f"{train_loss:.4f}", "seq/s": f"{run_sequences_per_s:.0f}"}
            if best_val:
                postfix[f"best_{metric}"] = f"{best_val[metric]:.4f}"
            self.bar.set_postfix(postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _line(
        self, epoch: int, train_loss: float, val: dict[str, float] | None, best_val: dict[str, float] | None,
        best_epoch: int, epoch_seconds: float, val_seconds: float, windows: int, steps: int,
        steps_per_epoch: int, cut: bool,
    ) -> None:
        metric, model_name = self.tc.selection_metric, self.model_name
        seqs_per_s = windows / max(epoch_seconds, 1e-9)
        shown = f"{val[metric]:.4f}" if val is not None else "-"
        best = f"{best_val[metric]:.4f}@{best_epoch}" if best_val else "-"
        cut_note = f" cut after {steps}/{steps_per_epoch} steps (max_train_seconds)" if cut else ""
        self.log.info(
            "%s epoch %d/%d: train_loss=%.4f val_%s=%s best=%s epoch_seconds=%.2f val_seconds=%.2f "
            "sequences_per_s=%.0f%s",
            model_name, epoch, self.tc.epochs, train_loss, metric, shown, best, epoch_seconds, val_seconds,
            seqs_per_s, cut_note,
            extra={"model": model_name, "epoch": epoch, "train_loss": train_loss,
                   f"val_{metric}": None if val is None else val[metric], "epoch_seconds": round(epoch_seconds, 3),
                   "sequences_per_s": round(seqs_per_s, 1), "steps": steps, "steps_per_epoch": steps_per_epoch},
        )
