"""`Frozen`: an immutable value class with slots, for the modules a copy's keeper loads.

A keeper (`harmony.actors.drivers.tether_main`) runs once per copy, so a thousand copies on
one machine are a thousand keepers, and every module they load costs each of them memory:
`dataclasses` alone (it imports `inspect`) is about 3 MB of a keeper. The few value classes
of the keeper's modules derive from this instead: a subclass lists its fields in
``__slots__`` (the ones equality and hashing use in ``_compared`` if not all of them) and
sets them in its ``__init__`` with `_set`; it then compares, hashes, prints and refuses
assignment as a ``@dataclass(frozen=True)`` does.
"""

from __future__ import annotations

__all__ = ["Frozen"]


class Frozen:
    __slots__ = ()
    _compared: tuple[str, ...] = ()
    """The fields equality and the hash use; empty: all of ``__slots__``."""

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _fields(self) -> tuple[str, ...]:
        return type(self).__slots__

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in (self._compared or self._fields()))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frozen) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields())
        return f"{type(self).__qualname__}({fields})"
