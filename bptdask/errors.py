"""The bptdask exception hierarchy.

Every error bptdask raises on purpose derives from :class:`BptDaskError` and from the
builtin exception it resembles, so ``except ValueError`` keeps working for callers that
do not know about bptdask. Messages quote the offending value and say how to fix it.

:class:`NotFittedError` also subclasses scikit-learn's, which this module does not import
until the name is first used (scikit-learn takes a second to import; the kernels import
this module).
"""

from __future__ import annotations


class BptDaskError(Exception):
    """Base class of every error bptdask raises on purpose."""


class ShapeError(BptDaskError, ValueError):
    """An array or layer has a shape that does not fit (wrong rank, channels, kernel size)."""


class DataError(BptDaskError, ValueError):
    """Input data is unusable: NaN or infinite values, labels out of range, bad dtype."""


class ConfigurationError(BptDaskError, ValueError):
    """An option has a value bptdask cannot use (unknown architecture, negative rate)."""


class ModelFileError(BptDaskError, ValueError):
    """A saved model file is truncated, corrupt, or was not written by bptdask."""


class CheckpointError(BptDaskError, ValueError):
    """A checkpoint cannot be used: missing, malformed, of another run, or not written by bptdask."""


class TrainingDivergedError(BptDaskError, FloatingPointError):
    """Training produced NaN or infinite updates again and again, and was stopped."""


class DatasetError(BptDaskError, ValueError):
    """A dataset store cannot be used: missing, malformed, incomplete or corrupt."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No dataset exists at the given path or store."""


class DatasetExistsError(DatasetError, FileExistsError):
    """The target of an ingest already holds data and ``overwrite=True`` was not given."""


class DatasetFormatError(DatasetError):
    """A store is not a bptdask dataset or breaks its format (arrays, dtypes, chunks, attributes)."""


class IncompleteDatasetError(DatasetError):
    """A dataset was never finished: its ingest was interrupted or is still running."""


class DatasetVersionError(DatasetError):
    """A dataset was written in a newer format than this bptdask can read."""


class CorruptChunkError(DatasetError):
    """A stored chunk is missing or fails its checksum or decompression."""


class SourceError(BptDaskError, ValueError):
    """An ingest source (IDX, NPZ, image folder) is missing, malformed or undecodable."""


class ClusterTrainingError(BptDaskError, RuntimeError):
    """Distributed training could not finish: every worker lost, the coordinator gone, a timeout."""


class CoordinatorLostError(ClusterTrainingError):
    """The coordinator actor cannot be reached: its worker died, left the cluster or froze."""


class ProtocolError(BptDaskError, RuntimeError):
    """A caller broke the coordinator's protocol (pushed a part never handed out, rejoined under a dropped name)."""


class DatasetBusyError(DatasetError):
    """Another ingest is writing the same dataset path right now; one writer at a time."""


class DatasetChangedError(DatasetError):
    """A dataset was replaced or altered after it was opened; open it again."""


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """No model file exists at the given path."""


def __getattr__(name: str):
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError as SklearnNotFittedError

        class NotFittedError(BptDaskError, SklearnNotFittedError):
            """An estimator method that needs learned weights was called before ``fit``.

            Also scikit-learn's ``NotFittedError`` (a ``ValueError`` and an ``AttributeError``).
            """

        NotFittedError.__module__, NotFittedError.__qualname__ = __name__, "NotFittedError"
        globals()["NotFittedError"] = NotFittedError
        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
