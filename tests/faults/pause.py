"""A callback the fault tests add from the command line (`+callbacks.pause=...`): it marks when a
stage has begun and slows its batches down, so that a signal lands inside that stage."""

import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class Pause(Callback):
    """Touch `marker` at the first batch of `stage` ("fit" or "test") from epoch `after_epoch`
    on, then sleep `seconds` before every batch of that stage; with `hold`, first wait until that
    file exists (at most two minutes)."""

    def __init__(
        self,
        marker: str,
        stage: str,
        seconds: float = 0.5,
        after_epoch: int = 0,
        hold: str | None = None,
    ) -> None:
        self.marker, self.stage, self.seconds = marker, stage, seconds
        self.after_epoch, self.hold = after_epoch, hold

    def _pause(self, trainer) -> None:
        if trainer.current_epoch >= self.after_epoch or self.stage == "test":
            Path(self.marker).touch()
            end = time.monotonic() + 120
            while self.hold and not Path(self.hold).exists() and time.monotonic() < end:
                time.sleep(0.05)
            time.sleep(self.seconds)

    def on_train_batch_start(self, trainer, *args) -> None:
        if self.stage == "fit":
            self._pause(trainer)

    def on_test_batch_start(self, trainer, *args) -> None:
        if self.stage == "test":
            self._pause(trainer)
