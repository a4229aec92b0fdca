"""Shared behaviour of result objects: they unpack like the tuples they replace."""

from __future__ import annotations

import dataclasses


class Unpackable:
    """Frozen-dataclass mixin: ``a, b = result`` unpacks the ``_unpack`` fields."""

    _unpack: tuple[str, ...] = ()

    def __iter__(self):
        return iter(getattr(self, name) for name in self._unpack)

    def __len__(self) -> int:
        return len(self._unpack)

    def __getitem__(self, index):
        return tuple(self)[index]

    def __repr__(self) -> str:
        parts = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            shape = getattr(value, "shape", None)
            parts.append(f"{field.name}={'array' + str(tuple(shape)) if shape is not None else repr(value)}")
        return f"{type(self).__name__}({', '.join(parts)})"
