"""Adversarial settings, inputs, command lines and cluster faults: each a clear error, nothing on disk changed.

Settings and odd arrays raise a :class:`~bptdask.errors.BptDaskError` subclass naming the
bad value; in-process training that diverges stops with ``TrainingDivergedError``
instead of returning or saving NaN weights; the command line prints one line and exits
with the status of the error's kind; errors on a cluster reach the client with their
real cause. Every case checks that the files around it are byte for byte as before.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster

import bptdask
from bptdask import BPTClassifier, datasets
from bptdask.cli import main
from bptdask.cluster import fit_on_cluster
from bptdask.data import open_dataset
from bptdask.errors import (
    ClusterTrainingError,
    ConfigurationError,
    CorruptChunkError,
    DataError,
    ShapeError,
    TrainingDivergedError,
)
from bptdask.models import lenet5
from bptdask.outer.run_config import RunConfig

DIGITS_NET = partial(lenet5, padding=2)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (or ``root`` itself) -> the SHA-256 of its bytes."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def one_line_error(stderr: str, *expected: str) -> str:
    """The one ``bptdask...: error:`` line of ``stderr``, checked to hold each of ``expected``."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert "error: " in lines[0] and all(text in lines[0] for text in expected), lines[0]
    return lines[0]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """``bptdask ARGS`` in this process: ``(exit status, stdout, stderr)``, usage errors included."""
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def digits():
    """200 training digits ``(N, 1, 8, 8)`` uint8 with int labels, and 100 to test on."""
    (X, y), test = datasets.split(*datasets.digits(random_state=0), test_size=100, train_size=200)
    return X, y, test


@pytest.fixture(scope="module")
def fitted(digits):
    X, y, _ = digits
    return BPTClassifier(DIGITS_NET, epochs=1, batch_size=32, random_state=0, device="cpu", n_threads=1).fit(X, y)


@pytest.fixture(scope="module")
def digits_zarr(tmp_path_factory):
    """The digits as a bptdask dataset with a test split (chunks of 100)."""
    path = tmp_path_factory.mktemp("cli-settings") / "digits.zarr"
    bptdask.ingest(*datasets.digits(random_state=0), path, chunk_size=100, test_size=0.2)
    return path


# ---------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("lr", float("inf")),
        ("lr", float("nan")),
        ("weight_decay", float("inf")),
        ("momentum", float("nan")),
        ("merge_weight", float("inf")),
        ("staleness_decay", float("nan")),
        ("worker_timeout", float("inf")),
        ("target_accuracy", float("nan")),
        ("epochs", 0),
        ("epochs", -3),
        ("epochs", 2.5),
        ("batch_size", 0),
        ("batch_size", "64"),
        ("chunk_size", 0),
        ("n_threads", 0),
        ("random_state", -1),
        ("random_state", 1.5),
        ("architecture", "resnet50"),
    ],
)
def test_a_bad_setting_is_refused_before_training(digits, setting, value):
    X, y, test = digits
    classifier = BPTClassifier(**{"architecture": DIGITS_NET, "device": "cpu", setting: value})
    with pytest.raises(ConfigurationError, match=setting if setting != "architecture" else "unknown architecture"):
        classifier.fit(X, y, validation_data=test)
    assert not hasattr(classifier, "params_")


@pytest.mark.parametrize(
    ("options", "fit_options", "message"),
    [
        ({"client": "tcp://127.0.0.1:8786"}, {}, "client must be a distributed.Client or None"),
        ({}, {"validation_data": np.zeros((5, 1, 8, 8))}, r"validation_data must be a pair \(X_val, y_val\)"),
        ({"target_accuracy": 0.9}, {}, "target_accuracy needs validation_data"),
    ],
    ids=["client string", "validation array", "target without validation"],
)
def test_misused_fit_arguments_are_refused(digits, options, fit_options, message):
    X, y, _ = digits
    classifier = BPTClassifier(DIGITS_NET, epochs=1, device="cpu", **options)
    with pytest.raises(ConfigurationError, match=message):
        classifier.fit(X, y, **fit_options)
    assert not hasattr(classifier, "params_")


def test_diverging_training_in_process_stops_and_keeps_finite_weights(digits, tmp_path):
    X, y, _ = digits
    model = tmp_path / "model.npz"
    model.write_bytes(b"an older model")
    before = tree_digest(tmp_path)
    classifier = BPTClassifier(DIGITS_NET, epochs=3, lr=1e4, random_state=0, device="cpu", n_threads=1)
    with pytest.warns(RuntimeWarning), pytest.raises(TrainingDivergedError, match=r"diverged in epoch 1.*lower the"):
        classifier.fit(X, y)
    assert all(np.isfinite(value).all() for value in classifier.params_.values()), "the NaN weights were kept"
    assert classifier.history_ == [], "no epoch finished"
    assert tree_digest(tmp_path) == before


def test_a_model_with_nan_weights_is_not_saved(fitted, tmp_path):
    model = tmp_path / "model.npz"
    fitted.save(model)
    before = tree_digest(tmp_path)
    broken = BPTClassifier.load(model, device="cpu")
    name = sorted(broken.params_)[0]
    broken.params_[name] = np.full_like(broken.params_[name], np.nan)
    with pytest.raises(TrainingDivergedError, match=f"{name}.*nothing was written"):
        broken.save(model)
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing/model.npz", "does not exist; create it first"),
        ("model.txt", "must name a .npz file"),
        ("folder.npz", "is a directory"),
    ],
)
def test_save_refuses_a_path_it_cannot_write(fitted, tmp_path, name, message):
    (tmp_path / "folder.npz").mkdir()
    before = tree_digest(tmp_path)
    with pytest.raises(ConfigurationError, match=message):
        fitted.save(tmp_path / name)
    assert tree_digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["folder.npz"]


# ---------------------------------------------------------------- odd arrays
@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda X, y: (X.reshape(-1), y), ShapeError, "4-D array"),
        (lambda X, y: (X[:, 0], y), ShapeError, "add a channel axis"),
        (
            lambda X, y: (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X.astype(np.float32)), y),
            DataError,
            "NaN",
        ),
        (lambda X, y: (X, y[:-7]), ShapeError, "one label per sample"),
        (lambda X, y: (X, np.array([1, "a"] * (len(y) // 2), dtype=object)), DataError, "mixes labels"),
        (lambda X, y: (X.astype(np.int64), y), DataError, "uint8"),
        (lambda X, y: (X, np.zeros_like(y)), DataError, "at least 2 classes"),
    ],
    ids=["1-D X", "3-D X", "NaN pixel", "y shorter", "mixed labels", "int64 X", "one class"],
)
def test_odd_training_arrays_are_refused(digits, make, error, message):
    X, y = make(*digits[:2])
    with pytest.raises(error, match=message):
        BPTClassifier(DIGITS_NET, epochs=1, device="cpu").fit(X, y)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c, X, y: c.predict(np.repeat(X, 3, axis=1)), DataError, r"shape \(3, 8, 8\).*fitted on \(1, 8, 8\)"),
        (lambda c, X, y: c.predict(X.reshape(len(X), -1)), ShapeError, "4-D array"),
        (lambda c, X, y: c.predict_proba(np.full(X.shape, np.inf, dtype=np.float32)), DataError, "NaN or infinite"),
        (lambda c, X, y: c.score(X, y[:10]), ShapeError, "one label per sample"),
        (lambda c, X, y: c.score(X), DataError, "needs their labels y"),
        (lambda c, X, y: c.score(X, np.array([3, "b"] * (len(y) // 2), dtype=object)), DataError, "mixes labels"),
        (lambda c, X, y: c.partial_fit(X, y + 100), DataError, "not among the classes"),
    ],
    ids=["3 channels", "vectors", "inf images", "y shorter", "no y", "mixed labels", "unknown labels"],
)
def test_odd_arrays_after_fitting_are_refused(fitted, digits, call, error, message):
    _, _, (X_test, y_test) = digits
    weights = {name: value.copy() for name, value in fitted.params_.items()}
    with pytest.raises(error, match=message):
        call(fitted, X_test, y_test)
    assert all(np.array_equal(weights[name], value) for name, value in fitted.params_.items())


# ---------------------------------------------------------------- the command line
TRAIN_DIGITS = ["train", "--dataset", "digits", "--padding", "2", "--epochs", "1", "--test-size", "397", "--quiet"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--test-size", "nan"], "argument --test-size: expected an integer >= 1, got 'nan'"),
        (["train", "--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
        (["train", "--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
        (["train", "--batch-size", "2.5"], "argument --batch-size: expected an integer >= 1"),
        (["train", "--seed", "-1"], "argument --seed: expected an integer >= 0"),
        (["evaluate", "m.npz", "--test-size", "-5"], "argument --test-size"),
        (["ingest", "digits", "OUT.zarr", "--test-size", "nan"], "expected a fraction in [0, 1) or a count >= 0"),
        (["ingest", "digits", "OUT.zarr", "--chunk-size", "0"], "argument --chunk-size"),
        (["train", "--architecture", "resnet"], "argument --architecture: invalid choice"),
        (["train", "--padding", "40", "--workers", "0"], "--padding must be at most 4"),
    ],
)
def test_bad_numbers_on_the_command_line_are_usage_errors(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(args, capsys)
    assert status == 2 and out == ""
    one_line_error(err, message)
    assert list(tmp_path.iterdir()) == [], "nothing is written"


def test_output_is_checked_before_training(tmp_path, capsys):
    (tmp_path / "model.npz").write_bytes(b"an older model")
    (tmp_path / "folder.npz").mkdir()
    before = tree_digest(tmp_path)
    for output, message in [
        (tmp_path / "missing" / "m.npz", "the folder"),
        (tmp_path / "m.json", "--output must name a .npz file"),
        (tmp_path / "folder.npz", "is a directory"),
    ]:
        status, out, err = run_cli([*TRAIN_DIGITS, "--workers", "0", "--output", str(output)], capsys)
        assert status == 2 and "test accuracy" not in out, "training ran before --output was checked"
        one_line_error(err, message)
    status, out, err = run_cli([*TRAIN_DIGITS, "--workers", "0", "--report", str(tmp_path / "r.json")], capsys)
    assert status == 2 and "test accuracy" not in out
    one_line_error(err, "--report needs a cluster")
    assert tree_digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["folder.npz", "model.npz"]


def test_diverging_cli_training_exits_4_and_keeps_the_old_model(tmp_path, capsys):
    model = tmp_path / "model.npz"
    model.write_bytes(b"an older model")
    before = tree_digest(tmp_path)
    with pytest.warns(RuntimeWarning):
        status, _, err = run_cli([*TRAIN_DIGITS, "--workers", "0", "--lr", "10000", "--output", str(model)], capsys)
    assert status == 4
    one_line_error(err, "training diverged in epoch 1")
    assert tree_digest(tmp_path) == before


def test_input_errors_exit_3_with_one_line(tmp_path, digits_zarr, capsys):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(256))
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(digits_zarr, damaged)
    (damaged / "zarr.json").write_bytes(b"{ not json")
    before = tree_digest(tmp_path)
    cases = [
        (["evaluate", str(tmp_path / "missing.npz")], "missing.npz"),
        (["evaluate", str(garbage)], "garbage.npz"),
        (["train", str(damaged), "--workers", "0", "--quiet"], "damaged.zarr"),
        (["train", "nosuchprotocol://bucket/data.zarr", "--workers", "0"], "nosuchprotocol"),
        (["evaluate", str(garbage), str(tmp_path / "missing.zarr")], "garbage.npz"),
    ]
    for args, names in cases:
        status, out, err = run_cli(args, capsys)
        assert status == 3 and out == "", (args, err)
        one_line_error(err, names)
    assert tree_digest(tmp_path) == before


def test_an_unreachable_scheduler_exits_5_and_leaves_no_default_client(tmp_path, capsys):
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        status, out, err = run_cli([*TRAIN_DIGITS, "--scheduler", "tcp://127.0.0.1:9"], capsys)
        assert status == 5 and "test accuracy" not in out
        one_line_error(err, "cannot reach a Dask scheduler at 'tcp://127.0.0.1:9'", "check the address")
        status, _, err = run_cli(["ingest", "digits", str(tmp_path / "d.zarr"), "--scheduler", "nowhere"], capsys)
    assert status == 5
    one_line_error(err, "cannot reach a Dask scheduler at 'nowhere'")
    assert dask.config.get("scheduler", None) is None, "a client that never connected is not the default"
    assert list(tmp_path.iterdir()) == []
    # As a user runs it: nothing more is printed when the process exits.
    command = [sys.executable, "-m", "bptdask", "ingest", "digits", "d.zarr", "--scheduler", "nowhere"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 5
    one_line_error(result.stderr, "missing port number")
    assert list(tmp_path.iterdir()) == []


def test_help_documents_the_exit_statuses(capsys):
    status, out, _ = run_cli(["train", "--help"], capsys)
    assert status == 0
    for line in (
        "exit statuses:",
        "2   a bad command line",
        "3   unusable input",
        "4   training diverged",
        "5   the Dask",
        "6   out of memory",
    ):
        assert line in out


def test_readme_train_then_evaluate_runs_as_a_user_would(tmp_path, capsys):
    """``python -m bptdask train DATA.zarr --output m.npz``, then ``evaluate m.npz`` on DATA and on --dataset."""

    def bptdask_cli(*args: str) -> str:
        command = [sys.executable, "-m", "bptdask", *args]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        return result.stdout

    bptdask.data.ingest_builtin("digits", tmp_path / "DATA.zarr", progress=False)  # as `bptdask ingest digits`
    trained = bptdask_cli(
        "train", "DATA.zarr", "--padding", "2", "--epochs", "2", "--workers", "0", "--output", "m.npz"
    )
    scored = [line for line in trained.splitlines() if line.startswith("test accuracy: ")]
    assert bptdask_cli("evaluate", "m.npz", "DATA.zarr").splitlines() == scored, "the same test split, the same score"
    packaged = bptdask_cli("evaluate", "m.npz", "--dataset", "digits", "--test-size", "300")
    assert float(packaged.split()[2]) > 0.5, packaged
    status, out, err = run_cli(["evaluate", str(tmp_path / "m.npz"), "--dataset", "mnist-sample"], capsys)
    assert status == 3 and out == ""
    one_line_error(err, "fitted on (1, 8, 8)")


def test_evaluate_matches_integer_labels_and_class_names_either_way(tmp_path, digits_zarr, capsys):
    """A model trained on packaged digits (integer classes) scores on an ingested store (names "0".."9")."""
    model = tmp_path / "packaged.npz"
    status, out, err = run_cli([*TRAIN_DIGITS, "--workers", "0", "--output", str(model)], capsys)
    assert status == 0 and err == "", err
    before = tree_digest(digits_zarr)
    status, out, err = run_cli(["evaluate", str(model), str(digits_zarr)], capsys)
    assert status == 0 and err == "" and float(out.split()[2]) > 0.5, out
    assert tree_digest(digits_zarr) == before


def test_ctrl_c_exits_130_with_one_line_and_writes_no_model(tmp_path):
    model = tmp_path / "model.npz"
    command = [sys.executable, "-m", "bptdask", "train", "--dataset", "digits", "--padding", "2", "--epochs", "1000"]
    command += ["--workers", "0"]  # not --quiet: the first epoch's line says training runs
    process = subprocess.Popen(
        [*command, "--output", str(model)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().startswith("epoch 1, "), "training runs"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert err.split("\n")[-2] == "bptdask: interrupted"
    assert list(tmp_path.iterdir()) == []


def test_running_out_of_memory_exits_6_with_one_line(tmp_path):
    """Under a 1.1 GB address-space limit (imports take ~0.75 GB), batches of 4,000 MNIST images do not fit."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1100 * 2**20, 1100 * 2**20))

    command = [sys.executable, "-m", "bptdask", "train", "--workers", "0", "--threads", "1", "--epochs", "1"]
    command += ["--batch-size", "4000", "--quiet", "--output", str(tmp_path / "model.npz")]
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, preexec_fn=limit_memory, env=environment
    )
    assert result.returncode == 6, result.stderr
    one_line_error(result.stderr, "out of memory (Unable to allocate", "smaller --batch-size")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("capsh") is None, reason="needs capsh to drop CAP_DAC_OVERRIDE")
def test_output_in_a_read_only_folder_fails_before_training(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    script = f"{sys.executable} -m bptdask {' '.join(TRAIN_DIGITS)} --workers 0 --output {folder}/m.npz"
    result = subprocess.run(
        ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if "Operation not permitted" in result.stderr and "capsh" in result.stderr:
        pytest.skip("capsh may not drop capabilities here")
    assert result.returncode == 2 and "test accuracy" not in result.stdout, result.stderr
    one_line_error(result.stderr, "takes no new file", "Permission denied")
    assert list(folder.iterdir()) == []


# ---------------------------------------------------------------- errors on a cluster
#: Two Nanny workers of two threads (one trains, one is free for a test's own task) and 1 GB each.
CLUSTER = {
    "n_workers": 2,
    "threads_per_worker": 2,
    "memory_limit": "1GB",
    "host": "127.0.0.1",
    "dashboard_address": None,
}


@pytest.fixture(scope="module")
def client():
    """A shared cluster; the memory test, which runs last, has its workers killed (their Nannies restart them)."""
    with LocalCluster(processes=True, **CLUSTER) as cluster, Client(cluster) as client:
        yield client


def in_process_cluster() -> LocalCluster:
    """A small cluster of threads in this process, for a client closed before the fit."""
    return LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)


def test_a_damaged_chunk_read_on_a_worker_reaches_the_client_as_itself(client, digits_zarr, tmp_path):
    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(digits_zarr, damaged)
    for chunk in sorted((damaged / "images" / "c").rglob("*"))[:4]:
        if chunk.is_file():
            data = bytearray(chunk.read_bytes())
            data[len(data) // 2] ^= 0xFF
            chunk.write_bytes(bytes(data))
    before = tree_digest(damaged)
    classifier = BPTClassifier(DIGITS_NET, epochs=1, client=client, random_state=0)
    with pytest.raises(CorruptChunkError, match=r"^on worker tcp://127\.0\.0\.1:\d+: dataset .*damaged"):
        classifier.fit(damaged)
    assert tree_digest(damaged) == before


def test_a_closed_client_is_named_as_the_cause(digits):
    X, y, _ = digits
    with in_process_cluster() as cluster, Client(cluster) as closed:
        pass
    classifier = BPTClassifier(DIGITS_NET, epochs=1, client=closed, random_state=0)
    with pytest.raises(ClusterTrainingError, match=r"the Dask client is closed.*start a new Client"):
        classifier.fit(X, y)


def test_a_worker_too_busy_for_the_storage_check_is_named(digits_zarr):
    """The worker's only thread is taken, so the check before training cannot run in time."""
    model = DIGITS_NET(num_classes=10, input_shape=(1, 8, 8))
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        busy = client.submit(time.sleep, 3, pure=False)
        config = RunConfig(epochs=1, call_timeout=0.5)
        with pytest.raises(ClusterTrainingError, match=r"did not finish checking the storage.*is it alive"):
            fit_on_cluster(client, open_dataset(digits_zarr), model, model.init_params(0), config)
        busy.result()


def when_training(client: Client, action) -> threading.Thread:
    """Run ``action()`` on a thread as soon as a fit's training task runs on the cluster."""

    def wait_then_act() -> None:
        while not any("bptdask-train" in str(key) for keys in client.processing().values() for key in keys):
            time.sleep(0.05)
        action()

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def test_a_cluster_closed_during_the_fit_is_named_as_the_cause(digits):
    X, y, _ = digits
    with LocalCluster(processes=True, **{**CLUSTER, "memory_limit": None}) as cluster, Client(cluster) as client:
        closer = when_training(client, cluster.close)
        classifier = BPTClassifier(DIGITS_NET, epochs=500, client=client, random_state=0)
        with pytest.raises(ClusterTrainingError, match=r"closed.*(keep both open|keep the workers running)"):
            classifier.fit(X, y)
        closer.join()


def _use_memory_until_killed() -> None:
    """Runs on a worker: take memory 50 MB at a time until its Nanny kills the process."""
    blocks = []
    for _ in range(200):
        blocks.append(np.ones(50 * 2**20, dtype=np.uint8))
        time.sleep(0.05)


def test_a_worker_killed_for_memory_is_named_as_the_cause(client, digits):
    X, y, _ = digits

    def hog_every_worker() -> None:
        for address in client.scheduler_info()["workers"]:
            client.submit(_use_memory_until_killed, workers=[address], pure=False)

    hogging = when_training(client, hog_every_worker)
    classifier = BPTClassifier(DIGITS_NET, epochs=500, client=client, random_state=0)
    with pytest.raises(ClusterTrainingError, match=r"killed by its Nanny for exceeding its memory limit.*more memory"):
        classifier.fit(X, y)
    hogging.join()
