"""The run report of a distributed fit, as a text summary and as a JSON file.

The report is the dict that :func:`bptdask.cluster.fit_on_cluster` returns (and
``BPTClassifier.report_`` holds): IDPA rounds with each worker's busy time, makespan and
idle fraction; per-worker totals; every merge with its staleness; the worker loops'
summaries, lost workers and per-epoch evaluations.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path


def worker_rows(report: dict) -> list[dict]:
    """One row per worker: device, parts, samples, busy seconds, power (samples/s), staleness."""
    loops = report.get("worker_loops", {})
    rows = []
    for worker, totals in sorted(report["workers"].items()):
        staleness = totals["staleness"]
        rows.append({
            "worker": worker,
            "device": loops.get(worker, {}).get("device", "lost" if worker in report.get("lost_workers", {}) else "?"),
            "parts": totals["parts"],
            "samples": totals["samples"],
            "busy_seconds": totals["busy_seconds"],
            "power": totals["power"] or 0.0,
            "mean_staleness": statistics.fmean(staleness) if staleness else 0.0,
            "rejected": totals["rejected"],
        })
    return rows


def format_report(report: dict) -> str:
    """A few lines for a terminal: rounds, merges, lost workers and a per-worker table."""
    rounds = report["rounds"]
    idle = statistics.fmean(r["idle_fraction"] for r in rounds) if rounds else 0.0
    lines = [
        f"{report['epochs_done']} epochs in {report['seconds']:.1f} s: {len(rounds)} IDPA rounds "
        f"(mean idle fraction {idle:.3f}), {report['version']} merges, {report['rejected']} stale pushes rejected",
        f"{'worker':<28} {'device':>6} {'parts':>6} {'samples':>8} {'busy s':>8} {'samples/s':>10} {'staleness':>9}",
    ]
    for row in worker_rows(report):
        lines.append(
            f"{row['worker']:<28} {row['device']:>6} {row['parts']:>6} {row['samples']:>8} "
            f"{row['busy_seconds']:>8.2f} {row['power']:>10.0f} {row['mean_staleness']:>9.2f}"
        )
    for worker, reason in report.get("lost_workers", {}).items():
        lines.append(f"lost {worker}: {reason}")
    if report.get("resumed_from") is not None:
        lines.append(f"resumed from the checkpoint of version {report['resumed_from']}")
    if report.get("restarted_tasks"):
        lines.append(f"{len(report['restarted_tasks'])} tasks restarted against a recreated coordinator")
    for recovery in report.get("recoveries", []):
        lines.append(
            f"coordinator on {recovery['lost_coordinator']} lost at {recovery['seconds']:.1f} s; recreated on "
            f"{recovery['new_coordinator']} from version {recovery['checkpoint_version']} "
            f"({recovery['merges_lost']} merges lost)"
        )
    if report.get("invalid"):
        lines.append(f"{report['invalid']} updates rejected for NaN/inf values")
    checkpoints = report.get("checkpoints", {})
    if checkpoints.get("written"):
        lines.append(f"{checkpoints['written']} checkpoints written, the last of version {checkpoints['version']}")
    for error in checkpoints.get("errors", []):
        lines.append(f"checkpoint failed: {error}")
    return "\n".join(lines)


def save_report(report: dict, path) -> Path:
    """Write ``report`` as JSON to ``path`` atomically (a complete file or the old one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        try:
            json.dump(report, handle, indent=1)
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)
    return path
