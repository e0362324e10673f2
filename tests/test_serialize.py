"""Model files: round trips, atomic writes, and files that are truncated or not ours."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from bptdask.errors import ModelFileError
from bptdask.models import lenet5, vgg_small
from bptdask.serialize import FORMAT_VERSION, HEADER_KEY, load_model, save_model


@pytest.fixture
def saved(tmp_path):
    model = lenet5()
    params = model.init_params(3)
    path = save_model(tmp_path / "model.npz", model, params, metadata={"classes": list(range(10))})
    return model, params, path


def test_round_trip(saved):
    model, params, path = saved
    loaded = load_model(path)
    assert loaded.model == model
    assert loaded.metadata == {"classes": list(range(10))}
    assert loaded.params.keys() == params.keys()
    for name in params:
        np.testing.assert_array_equal(loaded.params[name], params[name])
        assert loaded.params[name].dtype == params[name].dtype


def test_round_trip_keeps_dropout_and_padding(tmp_path):
    model = vgg_small(input_shape=(3, 16, 16), width=4)
    path = save_model(tmp_path / "vgg.npz", model, model.init_params(0))
    assert load_model(path).model == model


def test_truncated_file(saved, tmp_path):
    _, _, path = saved
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 20):
        broken = tmp_path / f"cut{cut}.npz"
        broken.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match="truncated or not a bptdask model"):
            load_model(broken)


def test_not_an_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("hello")
    with pytest.raises(ModelFileError, match="not an NPZ archive"):
        load_model(path)


def test_npz_that_is_not_ours(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(ModelFileError, match="not a bptdask model"):
        load_model(path)


def test_pickled_content_is_refused_without_running_it(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, **{HEADER_KEY: np.array([{"format": "bptdask-model"}], dtype=object)})
    with pytest.raises(ModelFileError):
        load_model(path)


def _rewrite_header(path, change):
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays[HEADER_KEY].tobytes())
    change(header)
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def test_newer_format_version(saved):
    _, _, path = saved
    _rewrite_header(path, lambda h: h.update(version=FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match=r"newer bptdask.*upgrade"):
        load_model(path)


def test_architecture_that_does_not_match_parameters(saved):
    _, _, path = saved
    _rewrite_header(path, lambda h: h["architecture"]["layers"][0].update(out_channels=7))
    with pytest.raises(ModelFileError, match="does not match its parameters"):
        load_model(path)


def test_unknown_layer_type_in_file(saved):
    _, _, path = saved
    _rewrite_header(path, lambda h: h["architecture"]["layers"][0].update(type="os.system"))
    with pytest.raises(ModelFileError, match=r"unknown layer type 'os.system'"):
        load_model(path)


def test_failed_save_keeps_the_previous_file(saved, monkeypatch):
    model, _params, path = saved
    before = path.read_bytes()

    def broken_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, model, model.init_params(4))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name], "temporary file left behind"


def test_saved_file_is_a_plain_zip_of_arrays(saved):
    _, _, path = saved
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert f"{HEADER_KEY}.npy" in names and "param/0.weight.npy" in names


def test_a_format_1_file_without_checksums_still_loads(saved):
    _, params, path = saved
    _rewrite_header(path, lambda h: (h.pop("checksums"), h.update(version=1)))
    loaded = load_model(path)
    for name in params:
        np.testing.assert_array_equal(loaded.params[name], params[name])


def test_a_format_2_file_must_list_every_checksum(saved):
    _, _, path = saved
    _rewrite_header(path, lambda h: h["checksums"].pop("0.weight"))
    with pytest.raises(ModelFileError, match="checksums do not list every parameter"):
        load_model(path)
