"""Inner layer: what happens inside one worker for one training step."""

from bptdask.inner.step import StepResult, train_step

__all__ = ["StepResult", "train_step"]
