"""Scikit-learn's estimator-parameter protocol without scikit-learn: ``get_params``,
``set_params`` and a ``repr`` of the arguments that differ from their defaults.

A class that stores each ``__init__`` argument under its own name gets them by
inheriting :class:`ParamsMixin`; ``sklearn.base.clone`` then works on it.
"""

from __future__ import annotations

import inspect
from typing import Any

from bptdask.errors import ConfigurationError


class ParamsMixin:
    """``get_params``/``set_params``/``__repr__`` over the ``__init__`` signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments by name (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor arguments by name (scikit-learn protocol); returns self."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ConfigurationError(f"invalid parameter {name!r} for {type(self).__name__}; valid: {valid}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{n}={v!r}" for n, v in self.get_params().items() if not _same(v, defaults.get(n))]
        return f"{type(self).__name__}({', '.join(changed)})"


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return a is b
