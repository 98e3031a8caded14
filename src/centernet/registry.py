"""A tiny name -> builder registry (architectures, tasks, presets)."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(fn: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._items[name] = fn
            return fn

        return add

    def alias(self, name: str, target: str) -> None:
        """``name`` is another name of the registered ``target`` (kept for files that say it); not listed."""
        if name in self._items or name in self._aliases:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self.get(target)
        self._aliases[name] = target

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (itself unless an alias)."""
        return self._aliases.get(name, name)

    def get(self, name: str) -> T:
        try:
            return self._items[self.canonical(name)]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return self.canonical(name) in self._items
