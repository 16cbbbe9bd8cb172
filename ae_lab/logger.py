"""The run's W&B logger: Lightning's WandbLogger, with the test metrics in the run summary."""

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from ae_lab import keys


class SummaryWandbLogger(WandbLogger):
    """`WandbLogger` whose `test/...` scalars go to `run.summary`: one value per run belongs in the
    runs table and bar charts, not in ~40 one-point line panels of the history."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        test = {k: float(v) for k, v in metrics.items() if k.startswith("test/")}
        if test:
            self.experiment.summary.update(test)
        # Lightning adds `epoch` to the test logs; alone it would still make a history row.
        rest = {k: v for k, v in metrics.items() if k not in test and not (test and k == "epoch")}
        if rest:
            super().log_metrics(rest, step)

    @rank_zero_only
    def log_checkpoints(self, best: str | None, evaluated: str | None) -> None:
        """The run's best checkpoint and the one its test metrics come from, in the summary; the
        best one also as a model artifact when online (offline, an artifact would need uploading
        before anyone could use it, so the path is enough)."""
        run = self.experiment
        if evaluated:
            run.summary[keys.CHECKPOINT_EVALUATED] = str(evaluated)
        if not best:
            return
        run.summary[keys.CHECKPOINT_BEST] = str(best)
        if not run.offline:
            import wandb

            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata={"path": best})
            artifact.add_file(best, name="model.ckpt")
            run.log_artifact(artifact, aliases=["best", "latest"])
