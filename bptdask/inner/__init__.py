"""Inner layer: one training step of one subnetwork, as a task graph run on threads.

``plan`` builds the graph as plain data, ``runner`` executes it with critical-path
priority, ``step.train_step`` is the entry point every training path calls.
"""

from bptdask.inner.plan import Plan, make_plan
from bptdask.inner.runner import available_cores, run_plan
from bptdask.inner.step import StepResult, train_step

__all__ = ["Plan", "StepResult", "available_cores", "make_plan", "run_plan", "train_step"]
