"""Adversarial checkpoints and model files: damaged, crafted, misplaced or unwritable.

Every case asserts the error class, a key part of the message, and that nothing on
disk was lost or changed (the bytes of every file before and after). Permission
cases run in a subprocess without ``CAP_DAC_OVERRIDE`` (root ignores file modes);
disk-full cases run on a small tmpfs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import tracemalloc
import zipfile
from functools import partial
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
from distributed import Client, LocalCluster

import bptdask
from bptdask import BPTClassifier, Sequential, datasets
from bptdask.errors import (
    CheckpointError,
    ConfigurationError,
    DataError,
    ModelFileError,
    ModelNotFoundError,
    ShapeError,
)
from bptdask.layers import Dense, Flatten
from bptdask.outer.checkpoint import (
    CheckpointState,
    CheckpointStore,
    CheckpointWriter,
    check_checkpoint_path,
    load_checkpoint,
    resume_run,
)
from bptdask.outer.run_config import RunConfig, describe_run
from bptdask.predictor import Predictor
from bptdask.report import MergeLog
from bptdask.serialize import HEADER_KEY, load_model, save_model
from bptdask.testing import hostile

MODEL = Sequential([Flatten(), Dense(3)], input_shape=(1, 4, 4))
CONFIG = RunConfig(epochs=2, seed=5)
OTHER_MODEL = Sequential([Flatten(), Dense(5)], input_shape=(1, 4, 4))
RUN = describe_run(CONFIG, MODEL.to_config(), [40, 40], mean=[0.5], std=[0.25])


# ---------------------------------------------------------------- helpers
def files_of(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or ``path`` itself) -> the SHA-256 of its bytes."""
    path = Path(path)
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in path.rglob("*") if p.is_file()
    }


def checkpoint(version: int, *, run=RUN, seed=5) -> CheckpointState:
    params = {name: np.full(shape, version, np.float32) for name, shape in MODEL.param_shapes().items()}
    params["1.bias"][:] = 0  # an all-zero array: its chunk must still be stored
    return CheckpointState(params, version, 0, 0, {0: [1]}, {}, run, seed, MergeLog())


@pytest.fixture
def two_checkpoints(tmp_path):
    """A checkpoint directory holding versions 3 and 4; returns (store, older, newer)."""
    store = CheckpointStore(tmp_path / "ckpt")
    older, newer = store.write(checkpoint(3)), store.write(checkpoint(4))
    return store, older, newer


def weight_chunk(directory: Path) -> Path:
    return directory / "params" / "1.weight" / "c" / "0" / "0"


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, unmounted afterwards (skipped where mounting is not permitted)."""
    with hostile.small_disk(tmp_path / "small-disk", "4m") as mount:
        yield mount


def fill(disk: Path, *, leave: int) -> None:
    """Fill ``disk`` with one file until only about ``leave`` bytes are free."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


# ---------------------------------------------------------------- damaged checkpoints
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda chunk: chunk.unlink(), "1 of its 1 chunks are missing"),
        (lambda chunk: chunk.write_bytes(chunk.read_bytes()[:-5]), "a chunk cannot be read"),
        (lambda chunk: chunk.write_bytes(b""), "a chunk cannot be read"),
        (
            lambda chunk: chunk.write_bytes(bytes([chunk.read_bytes()[0] ^ 1]) + chunk.read_bytes()[1:]),
            "a chunk cannot be read",
        ),
    ],
    ids=["deleted", "truncated", "zero-byte", "bit-flipped"],
)
def test_a_damaged_weight_chunk_is_named_and_the_older_checkpoint_is_used(two_checkpoints, damage, message):
    store, _, newer = two_checkpoints
    damage(weight_chunk(newer))
    before = files_of(store.path)
    with pytest.raises(CheckpointError, match=rf"{newer.name}/params/1.weight is damaged: {message}"):
        load_checkpoint(newer)
    with pytest.warns(RuntimeWarning, match=rf"skipping a damaged checkpoint: .*{newer.name}.*; using g0000-v0+3"):
        assert store.latest().version == 3
    assert files_of(store.path) == before


def test_a_chunk_swapped_in_from_another_checkpoint_fails_the_content_checksum(two_checkpoints):
    store, older, newer = two_checkpoints
    shutil.copyfile(weight_chunk(older), weight_chunk(newer))  # a valid chunk, with its own good CRC32C
    before = files_of(store.path)
    with pytest.raises(CheckpointError, match="values do not match their CRC32C checksum"):
        load_checkpoint(newer)
    with pytest.warns(RuntimeWarning, match="skipping a damaged checkpoint"):
        assert store.latest().version == 3
    assert files_of(store.path) == before


def test_an_edited_checkpoint_document_fails_its_checksum(two_checkpoints):
    store, _, newer = two_checkpoints
    meta = json.loads((newer / "zarr.json").read_text())
    meta["attributes"]["epochs_done"] = 7
    (newer / "zarr.json").write_text(json.dumps(meta))
    before = files_of(store.path)
    with pytest.raises(CheckpointError, match=r"zarr.json is damaged: its contents do not match their CRC32C"):
        load_checkpoint(newer)
    with pytest.warns(RuntimeWarning, match="skipping a damaged checkpoint"):
        assert store.latest().version == 3
    assert files_of(store.path) == before


@pytest.mark.parametrize("garbage", [b"", b"\xff\xfe not json", b'{"zarr_format": 3, "node_type": 7}'])
def test_a_garbled_checkpoint_metadata_file_is_a_checkpoint_error(two_checkpoints, garbage):
    store, _, newer = two_checkpoints
    (newer / "params" / "1.weight" / "zarr.json").write_bytes(garbage)
    before = files_of(store.path)
    with pytest.raises(CheckpointError, match=r"1.weight"):
        load_checkpoint(newer)
    with pytest.warns(RuntimeWarning, match="skipping a damaged checkpoint"):
        assert store.latest().version == 3
    assert files_of(store.path) == before


def test_an_empty_newest_checkpoint_directory_is_skipped(two_checkpoints):
    store, _, _ = two_checkpoints
    (store.path / "g0000-v000000000009").mkdir()
    before = files_of(store.path)
    with pytest.warns(RuntimeWarning, match=r"g0000-v000000000009 is not a checkpoint \(it has no zarr.json\)"):
        assert store.latest().version == 4
    assert files_of(store.path) == before and (store.path / "g0000-v000000000009").is_dir()


def test_a_crafted_chunk_shape_is_refused_before_it_is_allocated(two_checkpoints):
    store, _, newer = two_checkpoints
    meta_path = newer / "params" / "1.bias" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [10**9]  # 4 GB for a 3-value array
    meta_path.write_text(json.dumps(meta))
    before = files_of(store.path)
    with pytest.raises(CheckpointError, match=r"1.bias has chunks \(1000000000,\) larger than its shape \(3,\)"):
        load_checkpoint(newer)
    assert files_of(store.path) == before


def test_when_no_checkpoint_is_intact_resume_fails_and_deletes_nothing(two_checkpoints):
    store, older, newer = two_checkpoints
    weight_chunk(older).unlink()
    weight_chunk(newer).write_bytes(b"junk")
    before = files_of(store.path)
    with pytest.raises(CheckpointError, match=r"none of the 2 checkpoints in .* is intact .*move the directory aside"):
        resume_run(store.path, CONFIG, RUN)
    assert files_of(store.path) == before


def test_an_all_zero_array_is_stored_so_its_deletion_is_seen(two_checkpoints):
    store, _, newer = two_checkpoints
    (newer / "params" / "1.bias" / "c" / "0").unlink()
    before = files_of(store.path)
    with pytest.raises(CheckpointError, match=r"1.bias is damaged: 1 of its 1 chunks are missing"):
        load_checkpoint(newer)
    assert files_of(store.path) == before


# ---------------------------------------------------------------- misplaced checkpoint paths
def test_a_damaged_root_file_of_a_checkpoint_directory_is_named(two_checkpoints):
    store, _, _ = two_checkpoints
    (store.path / "zarr.json").write_bytes(b"\x00\x01")
    before = files_of(store.path)
    with pytest.raises(CheckpointError, match=r"ckpt/zarr.json is damaged"):
        check_checkpoint_path(store.path)
    assert files_of(store.path) == before


def test_one_checkpoint_given_as_the_directory_is_refused_naming_the_parent(two_checkpoints):
    store, _, newer = two_checkpoints
    before = files_of(store.path)
    with pytest.raises(ConfigurationError, match=r"is one checkpoint of the directory .*ckpt'; pass that directory"):
        resume_run(newer, CONFIG, RUN)
    assert files_of(store.path) == before


def test_a_zero_byte_file_as_the_checkpoint_directory_is_refused(tmp_path):
    path = tmp_path / "ckpt"
    path.write_bytes(b"")
    with pytest.raises(ConfigurationError, match="is a file; pass a directory"):
        resume_run(path, CONFIG, RUN)
    assert path.read_bytes() == b""


# ---------------------------------------------------------------- checkpoints of another run
@pytest.mark.parametrize(
    ("other", "message"),
    [
        (
            describe_run(CONFIG, OTHER_MODEL.to_config(), [40, 40], mean=[0.5], std=[0.25]),
            r"its architecture \(layers\) differs from this fit's",
        ),
        (
            describe_run(CONFIG.replace(seed=6), MODEL.to_config(), [40, 40], mean=[0.5], std=[0.25]),
            r"its seed differs from this fit's \(seed: 5 in the checkpoint, 6 now\)",
        ),
        (
            describe_run(CONFIG, MODEL.to_config(), [40, 40], mean=[0.45], std=[0.25]),
            r"its data \(mean\) differ from this fit's \(mean: \[0.5\] in the checkpoint, \[0.45\] now\)",
        ),
    ],
    ids=["architecture", "seed", "data"],
)
def test_a_checkpoint_of_another_run_is_refused_naming_what_differs(two_checkpoints, other, message):
    store, _, _ = two_checkpoints
    before = files_of(store.path)
    with pytest.raises(CheckpointError, match=message):
        resume_run(store.path, CONFIG, other)
    assert files_of(store.path) == before


def test_weights_that_do_not_fit_the_architecture_are_refused_before_they_are_read(two_checkpoints):
    store, _, _ = two_checkpoints
    store.write(dataclasses.replace(checkpoint(5), params={"1.weight": np.ones((3, 17)), "1.bias": np.ones(3)}))
    before = files_of(store.path)
    with pytest.warns(RuntimeWarning, match=r"\['1.weight'\] do not have the shapes of its model's architecture"):
        _, resume, _ = resume_run(store.path, CONFIG, RUN)
    assert resume.version == 4
    assert files_of(store.path) == before


def test_a_drawn_seed_resumes_with_the_checkpoints_seed(two_checkpoints):
    store, _, _ = two_checkpoints
    drawn = describe_run(CONFIG.replace(seed=9), MODEL.to_config(), [40, 40], mean=[0.5], std=[0.25], seed_fixed=False)
    store.write(dataclasses.replace(checkpoint(5), run=drawn, seed=9))
    _, resume, config = resume_run(store.path, CONFIG.replace(seed=1), drawn)
    assert resume.version == 5 and config.seed == 9


# ---------------------------------------------------------------- unwritable checkpoint directories
def test_a_read_only_checkpoint_directory_is_refused_before_training(two_checkpoints):
    store, _, _ = two_checkpoints
    before = files_of(store.path)
    with hostile.mode(store.path, 0o555):
        done = hostile.run_without_dac_override(
            f"""
            from bptdask.errors import ConfigurationError
            from bptdask.outer.checkpoint import resume_run
            from bptdask.outer.run_config import RunConfig
            try:
                resume_run({str(store.path)!r}, RunConfig(epochs=2, seed=5), {RUN!r})
            except ConfigurationError as exc:
                print("refused:", exc)
            """
        )
    assert f"refused: checkpoints cannot be written to {store.path} (Permission denied)" in done.stdout, done.stderr
    assert files_of(store.path) == before


@pytest.mark.timeout(180)
def test_a_fit_into_a_read_only_directory_is_refused_on_the_client_before_training(tmp_path):
    directory = tmp_path / "ckpt"
    directory.mkdir(mode=0o555)
    try:
        done = hostile.run_without_dac_override(
            f"""
            from distributed import Client, LocalCluster
            from bptdask import BPTClassifier, datasets
            from bptdask.errors import ConfigurationError
            X, y = datasets.digits(random_state=0)
            with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as c:
                clf = BPTClassifier("mlp", epochs=1, client=c)
                try:
                    clf.fit(X[:200].reshape(200, -1), y[:200], checkpoint={str(directory)!r})
                except ConfigurationError as exc:
                    print("refused:", exc, "| trained:", clf.report_ is not None)
            """
        )
    finally:
        directory.chmod(0o755)
    assert f"refused: checkpoints cannot be written to {directory} (Permission denied)" in done.stdout, done.stderr
    assert "| trained: False" in done.stdout
    assert list(directory.iterdir()) == []


def test_a_checkpoint_directory_that_cannot_be_listed_is_refused(two_checkpoints):
    store, _, _ = two_checkpoints
    before = files_of(store.path)
    with hostile.mode(store.path, 0o000):
        done = hostile.run_without_dac_override(
            f"""
            from bptdask.errors import ConfigurationError
            from bptdask.outer.checkpoint import CheckpointStore
            try:
                CheckpointStore({str(store.path)!r})
            except ConfigurationError as exc:
                print("refused:", exc)
            """
        )
    assert f"refused: checkpoint directory {str(store.path)!r} cannot be listed (Permission denied)" in done.stdout
    assert files_of(store.path) == before


def test_a_failed_write_into_a_read_only_directory_keeps_the_previous_checkpoint(two_checkpoints):
    store, _, _ = two_checkpoints
    before = files_of(store.path)
    with hostile.mode(store.path, 0o555):
        done = hostile.run_without_dac_override(
            f"""
            import warnings
            from bptdask.outer.checkpoint import CheckpointStore, CheckpointWriter, load_checkpoint
            store = CheckpointStore({str(store.path)!r})
            state = store.latest()
            state.version = 9
            writer = CheckpointWriter(store, every=1, background=False)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                print("written:", writer.write(state), writer.status.errors, caught[0].message)
            print("latest:", store.latest().version)
            """
        )
    assert "written: None" in done.stdout and "v9: PermissionError(13, 'Permission denied')" in done.stdout, done.stderr
    assert "latest: 4" in done.stdout
    assert files_of(store.path) == before


def test_a_full_disk_is_refused_before_training_and_a_failed_write_keeps_the_previous_checkpoint(small_disk):
    store = CheckpointStore(small_disk / "ckpt")
    store.write(checkpoint(3))
    fill(small_disk, leave=1024)
    before = files_of(small_disk)
    with pytest.raises(ConfigurationError, match=rf"checkpoints cannot be written to {small_disk}/ckpt \(No space"):
        resume_run(store.path, CONFIG, RUN)
    big = dataclasses.replace(checkpoint(4), params={"1.weight": np.random.rand(3, 16 * 1024), "1.bias": np.ones(3)})
    writer = CheckpointWriter(store, every=1, background=False)
    with pytest.warns(RuntimeWarning, match="checkpoint of version 4 failed: OSError"):
        assert writer.write(big) is None
    assert writer.status.errors and store.latest().version == 3
    assert files_of(small_disk) == before, "the failed write left or changed files"


# ---------------------------------------------------------------- through a real cluster
@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def digits():
    X, y = datasets.digits(random_state=0)
    return X[:600], y[:600]


def classifier(client, **options):
    lenet = partial(bptdask.models.lenet5, padding=2)
    return BPTClassifier(
        lenet, **{"epochs": 1, "batch_size": 32, "chunk_size": 200, "random_state": 0, **options}, client=client
    )


@pytest.mark.timeout(120)
def test_a_resume_skips_a_damaged_newest_checkpoint_for_the_intact_one_before(client, digits, tmp_path):
    classifier(client, checkpoint_every=2).fit(*digits, checkpoint=tmp_path)
    store = CheckpointStore(tmp_path)
    older, newer = store.names()
    weight_chunk_path = tmp_path / newer / "params" / "0.weight" / "c" / "0" / "0" / "0" / "0"
    weight_chunk_path.write_bytes(weight_chunk_path.read_bytes()[:-3])
    with pytest.warns(RuntimeWarning, match=rf"skipping a damaged checkpoint: .*{newer}.*; using {older}"):
        resumed = classifier(client, checkpoint_every=2).fit(*digits, checkpoint=tmp_path)
    assert resumed.report_.resumed_from == int(older.rsplit("v", 1)[1])


@pytest.mark.timeout(120)
def test_a_checkpoint_write_that_fails_mid_run_is_reported_on_the_client(client, digits, small_disk):
    directory = small_disk / "ckpt"
    classifier(client).fit(*digits, checkpoint=directory)
    fill(small_disk, leave=16 * 1024)
    before = files_of(small_disk)
    with pytest.warns(RuntimeWarning) as caught:
        clf = classifier(client).fit(*digits, checkpoint=directory)  # resumes, then its final write fails
    messages = [str(warning.message) for warning in caught]
    assert any(m.startswith(f"checkpoints could not be written to {directory} (") for m in messages), messages
    assert clf.report_.checkpoints.errors and "No space left" in clf.report_.checkpoints.errors[-1]
    assert files_of(small_disk) == before, "the failed write changed the checkpoints it did not replace"


@pytest.mark.timeout(120)
def test_a_fit_with_another_seed_or_data_is_refused_and_the_checkpoints_stay(client, digits, tmp_path):
    classifier(client).fit(*digits, checkpoint=tmp_path)
    before = files_of(tmp_path)
    X, y = digits
    with pytest.raises(CheckpointError, match="its seed differs"):
        classifier(client, random_state=1).fit(X, y, checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match=r"its data \(mean, std\) differ"):
        classifier(client).fit(X // 2, y, checkpoint=tmp_path)
    assert files_of(tmp_path) == before


# ---------------------------------------------------------------- model files
@pytest.fixture
def model_file(tmp_path):
    metadata = {"classes": ["a", "b", "c"], "mean": [0.5], "std": [0.25], "dtype": "float32", "history": []}
    return save_model(tmp_path / "model.npz", MODEL, MODEL.init_params(0), metadata=metadata)


def rewrite(path: Path, *, params=None, metadata=None, crafted=True) -> None:
    """Rewrite the model file at ``path`` with some parameters or metadata entries replaced.

    ``crafted``: the header's checksums are updated to match, as a crafted file would be.
    """
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays[HEADER_KEY].tobytes())
    header["metadata"].update(metadata or {})
    for name, value in (params or {}).items():
        arrays[f"param/{name}"] = value
        if crafted and value.dtype.kind == "f":
            header["checksums"][name] = google_crc32c.value(np.ascontiguousarray(value).tobytes())
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda p: p / "missing.npz", ModelNotFoundError, "no model file at"),
        (lambda p: p, ModelFileError, "is a directory; pass the .npz file"),
        (lambda p: written(p / "empty.npz", b""), ModelFileError, r"is empty \(0 bytes\)"),
        (lambda p: written(p / "notes.txt", b"hi"), ModelFileError, "not an NPZ archive"),
        (lambda p: written(p / "cut.npz", b"PK\x03\x04"), ModelFileError, "truncated or not a bptdask model"),
    ],
    ids=["missing", "directory", "empty", "text", "zip-magic-only"],
)
def test_a_model_path_that_is_no_model_file_is_a_clear_error(tmp_path, make, error, message):
    path = make(tmp_path)
    before = files_of(tmp_path)
    with pytest.raises(error, match=message):
        BPTClassifier.load(path)
    assert files_of(tmp_path) == before


def test_a_checkpoint_directory_or_a_checkpoint_file_is_no_model(two_checkpoints):
    store, _, newer = two_checkpoints
    before = files_of(store.path)
    with pytest.raises(ModelFileError, match="is a directory"):
        load_model(newer)
    with pytest.raises(ModelFileError, match="not an NPZ archive"):
        load_model(newer / "zarr.json")
    assert files_of(store.path) == before


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.full((3, 16), np.nan, np.float32), "holds NaN or infinite values"),
        (np.ones((3, 16), np.int32), "has dtype int32; a model file holds only float arrays"),
        (np.full((3, 16), "abc"), "has dtype <U3; a model file holds only float arrays"),
        (np.ones((3, 16), np.float16), "has dtype float16; models hold float32 or float64"),
        (np.ones((3, 16), np.float32), "fails its CRC32C checksum"),
    ],
    ids=["nan", "int", "string", "float16", "changed"],
)
def test_a_parameter_of_the_wrong_kind_or_value_is_refused(model_file, value, message):
    rewrite(model_file, params={"1.weight": value}, crafted="checksum" not in message)
    before = files_of(model_file)
    with pytest.raises(ModelFileError, match=message):
        BPTClassifier.load(model_file)
    assert files_of(model_file) == before


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"std": [0.0]}, r"std is \[0.0\]; the model needs 1 finite numbers .*all > 0"),
        ({"mean": [0.5, 0.5, 0.5]}, r"mean is .*the model needs 1 finite numbers"),
        ({"mean": ["x"]}, "mean is"),
        ({"classes": ["a", "b"]}, "is not 3 distinct integers or names"),
        ({"classes": ["a", "a", "b"]}, "is not 3 distinct integers or names"),
        ({"classes": [1, True, 2.5]}, "is not 3 distinct integers or names"),
        ({"dtype": "int8"}, "dtype is 'int8'"),
    ],
    ids=["std-zero", "mean-channels", "mean-string", "classes-short", "classes-duplicate", "classes-types", "dtype"],
)
def test_metadata_that_cannot_describe_the_model_is_refused(model_file, metadata, message):
    rewrite(model_file, metadata=metadata)
    before = files_of(model_file)
    with pytest.raises(ModelFileError, match=message):
        BPTClassifier.load(model_file)
    assert files_of(model_file) == before


def test_a_model_without_classifier_metadata_is_no_classifier(tmp_path):
    path = save_model(tmp_path / "bare.npz", MODEL, MODEL.init_params(0))
    before = files_of(path)
    with pytest.raises(ModelFileError, match=r"not a saved classifier \(no \['classes', 'mean', 'std'\]\)"):
        BPTClassifier.load(path)
    assert files_of(path) == before


def test_saving_what_could_not_load_back_is_refused_and_keeps_the_old_file(model_file):
    before = files_of(model_file)
    with pytest.raises(ModelFileError, match="is not 3 distinct integers"):
        save_model(model_file, MODEL, MODEL.init_params(1), metadata={"classes": [0, 1]})
    nan = {name: np.full(shape, np.nan, np.float32) for name, shape in MODEL.param_shapes().items()}
    with pytest.raises(bptdask.errors.TrainingDivergedError, match="hold NaN"):
        save_model(model_file, MODEL, nan)
    assert files_of(model_file.parent) == before


def huge_model_config() -> dict:
    """An architecture whose one weight takes 64 MiB: (4, 2048 * 2048) float32."""
    return Sequential([Flatten(), Dense(4)], input_shape=(1, 2048, 2048)).to_config()


def write_crafted(path: Path, entry: bytes, *, compress: int) -> None:
    header = {"format": "bptdask-model", "version": 1, "architecture": huge_model_config(), "metadata": {}}
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open(f"{HEADER_KEY}.npy", "w") as handle:
            np.lib.format.write_array(handle, np.frombuffer(json.dumps(header).encode(), np.uint8))
        archive.writestr("param/1.bias.npy", _npy(np.zeros(4, np.float32)))
        archive.writestr(zipfile.ZipInfo("param/1.weight.npy"), entry, compress_type=compress)


def _npy(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, value)
    return buffer.getvalue()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header of a float32 array of ``shape``, without its data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("compress", "message"),
    [(zipfile.ZIP_DEFLATED, "is compressed or declares"), (zipfile.ZIP_STORED, "bytes of data for 67108864 declared")],
    ids=["deflate-bomb", "short-entry"],
)
def test_a_crafted_file_is_refused_before_it_inflates_in_memory(tmp_path, compress, message):
    weight_header = _npy_header((4, 2048 * 2048))
    # 64 MiB of zeros deflate to about 64 KiB; stored, the entry holds 64 bytes of the 64 MiB its header declares
    entry = weight_header + bytes(4 * 2048 * 2048 * 4 if compress == zipfile.ZIP_DEFLATED else 64)
    path = tmp_path / "crafted.npz"
    write_crafted(path, entry, compress=compress)
    before = files_of(path)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=message):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"loading a {path.stat().st_size}-byte file allocated {peak} bytes"
    assert files_of(path) == before


@pytest.mark.parametrize(
    ("parts", "error", "message"),
    [
        ({"classes": np.array(["a", "b"])}, ShapeError, "2 class labels for a model with 3 outputs"),
        ({"std": np.array([0.0])}, DataError, r"std is \[0.0\]; prediction needs 1 finite values .*all > 0"),
        ({"mean": np.array([np.nan])}, DataError, "mean is"),
    ],
    ids=["classes", "std-zero", "mean-nan"],
)
def test_a_predictor_of_parts_that_would_predict_wrongly_is_refused(parts, error, message):
    fields = {"classes": np.array(["a", "b", "c"]), "mean": np.array([0.5]), "std": np.array([0.25]), **parts}
    with pytest.raises(error, match=message):
        Predictor(MODEL, MODEL.init_params(0), **fields)
