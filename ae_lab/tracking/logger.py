"""Lightning's WandbLogger, with the test metrics written to the run summary, not the history.

A test metric has one value per run; logged into the history it becomes a one-point line panel in
the W&B workspace (about 40 of them per run). In the summary it shows in the runs table, the run
overview and any bar chart, which is where a single number belongs.
"""

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

TEST_PREFIX = "test/"


class SummaryWandbLogger(WandbLogger):
    """`WandbLogger` whose `test/...` scalars go to `run.summary` (the rest as usual)."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        test = {k: float(v) for k, v in metrics.items() if k.startswith(TEST_PREFIX)}
        if not test:
            super().log_metrics(metrics, step)
            return
        self.experiment.summary.update(test)
        # Lightning adds `epoch` to the test logs; alone it would still make a history row.
        rest = {k: v for k, v in metrics.items() if k not in test and k != "epoch"}
        if rest:
            super().log_metrics(rest, step)
