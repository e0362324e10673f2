"""``bptdask ingest``: every source from the command line, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from bptdask.cli import main
from bptdask.data import open_dataset


def test_ingest_digits(tmp_path, capsys):
    out = tmp_path / "digits.zarr"
    assert main(["ingest", "digits", str(out), "--chunk-size", "500", "--test-size", "297", "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"wrote {str(out)!r}: 1797 images 1×8×8, 10 classes, 1500 train / 297 test, 4 chunks of 500"
    )
    assert open_dataset(out).source == "digits"


def test_ingest_files(tmp_path, mnist, write_idx, write_png_folder, capsys):
    images, labels = mnist
    np.savez(tmp_path / "a.npz", pixels=images.transpose(0, 2, 3, 1), targets=labels)
    args = ["ingest", "npz", str(tmp_path / "a.npz"), str(tmp_path / "npz.zarr"), "--images-key", "pixels"]
    args += ["--labels-key", "targets", "--layout", "NHWC", "--classes", ",".join("abcdefghij")]
    assert main(args) == 0
    from_npz = open_dataset(tmp_path / "npz.zarr")
    assert from_npz.classes == tuple("abcdefghij")
    np.testing.assert_array_equal(from_npz.read(0)[0], images)

    write_idx(tmp_path / "img.gz", images[:, 0], compress=True)
    write_idx(tmp_path / "lab.gz", labels, compress=True)
    assert main(["ingest", "idx", str(tmp_path / "img.gz"), str(tmp_path / "lab.gz"), str(tmp_path / "idx.zarr")]) == 0
    np.testing.assert_array_equal(open_dataset(tmp_path / "idx.zarr").read(0)[1], labels)

    write_png_folder(tmp_path / "pngs", images[:50], labels[:50])
    args = ["ingest", "folder", str(tmp_path / "pngs"), str(tmp_path / "f.zarr"), "--size", "14", "--no-progress"]
    assert main(args) == 0
    assert open_dataset(tmp_path / "f.zarr").shape == (50, 1, 14, 14)
    assert capsys.readouterr().out.count("wrote ") == 3


def test_errors_exit_with_the_status_of_their_kind_and_name_the_fix(tmp_path, capsys):
    out = str(tmp_path / "d.zarr")
    assert main(["ingest", "digits", out, "--no-progress"]) == 0
    assert main(["ingest", "digits", out, "--no-progress"]) == 3, "an unusable output path"
    assert "already exists; pass overwrite=True" in capsys.readouterr().err
    assert main(["ingest", "digits", out, "--no-progress", "--overwrite", "--shard-size", "1000"]) == 2
    assert "shard_size 1000 is not a multiple of chunk_size 1024" in capsys.readouterr().err
    assert main(["ingest", "folder", str(tmp_path / "none"), out, "--size", "1", "2", "3"]) == 2
    assert "--size takes H or H W, got 1 2 3" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_ingest_on_a_running_scheduler(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        args = ["ingest", "mnist-sample", str(tmp_path / "m.zarr"), "--scheduler", cluster.scheduler_address]
        assert main(args) == 0
    assert len(open_dataset(tmp_path / "m.zarr")) == 5000
