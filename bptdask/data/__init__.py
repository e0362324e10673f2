"""The data room: the Zarr dataset format, ingest from real formats, and reading chunks.

``ingest`` and the ``ingest_*`` functions write a dataset safely; ``open_dataset``
checks one and returns a :class:`Dataset` that reads chunk ranges into NumPy or CuPy.
"""

from bptdask.data.arrays import ingest
from bptdask.data.builtin import ingest_builtin
from bptdask.data.dataset import Dataset, open_dataset
from bptdask.data.folder import ingest_folder
from bptdask.data.format import FORMAT_VERSION
from bptdask.data.idx import ingest_idx
from bptdask.data.npz import ingest_npz

__all__ = [
    "FORMAT_VERSION",
    "Dataset",
    "ingest",
    "ingest_builtin",
    "ingest_folder",
    "ingest_idx",
    "ingest_npz",
    "open_dataset",
]
