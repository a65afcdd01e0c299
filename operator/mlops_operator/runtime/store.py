"""Stores: the objects of one kind as the watches and lists delivered them, and indexes over them."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

from mlops_operator.runtime.kinds import Body, Key, Resource, key_of, newer

Index = Callable[[Body], Iterable[Hashable]]
"""The values an object is found under in an index (none: not in it)."""


def plain(body: Any) -> Body:
    """A plain JSON copy of a body (a kopf body, or part of one), safe to keep after its handler returns."""
    return json.loads(json.dumps(dict(body)))  # type: ignore[no-any-return]


class Store:
    """The objects of one kind by (namespace, name), reduced by ``compact`` to what the controllers read, and found
    by the ``indexes`` (name -> the values an object is filed under)."""

    def __init__(
        self, resource: Resource, compact: Callable[[Any], Body] | None = None, indexes: dict[str, Index] | None = None
    ) -> None:
        self.resource = resource
        self._compact = compact or plain
        self._objects: dict[Key, Body] = {}
        self._indexers: dict[str, Index] = {}
        self._index: dict[str, dict[Hashable, dict[Key, Body]]] = {}
        for name, index in (indexes or {}).items():
            self.add_index(name, index)

    def add_index(self, name: str, index: Index) -> None:
        if name in self._indexers:
            if self._indexers[name] is not index:
                raise ValueError(f"{self.resource}: index {name!r} declared twice, differently")
            return
        self._indexers[name] = index
        self._index[name] = {}
        for key, body in self._objects.items():
            self._file(name, key, body)

    def get(self, key: Key) -> Body | None:
        return self._objects.get(key)

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[Body]:
        return iter(list(self._objects.values()))

    def keys(self) -> list[Key]:
        return list(self._objects)

    def by(self, index: str, value: Hashable) -> list[Body]:
        """The objects filed under ``value`` in ``index``."""
        return list(self._index[index].get(value, {}).values())

    def within(self, scope: str) -> dict[Key, Body]:
        """The objects of namespace ``scope`` (``*``: all)."""
        return {k: b for k, b in self._objects.items() if scope in ("*", k[0])}

    def same(self, body: Any) -> bool:
        """Whether ``body`` is the very version of the object held (same resourceVersion): delivered again."""
        cached = self._objects.get(key_of(body))
        version = body["metadata"].get("resourceVersion")
        return cached is not None and bool(version) and cached["metadata"].get("resourceVersion") == version

    def put(self, body: Any, as_is: bool = False) -> Body | None:
        """Takes ``body`` in unless it is the version held or older; returns what is now held, or None when
        nothing changed. ``as_is``: ``body`` is a plain body nobody else holds (an API answer), kept without
        compacting or copying it (the child stores keep ours whole anyway)."""
        if self.same(body):
            return None
        compact = body if as_is else self._compact(body)
        key = key_of(compact)
        cached = self._objects.get(key)
        if not newer(compact, cached):
            return None
        if cached is not None:
            self._unfile(key, cached)
        self._objects[key] = compact
        for name in self._indexers:
            self._file(name, key, compact)
        return compact

    def remove(self, key: Key, uid: str | None = None) -> Body | None:
        """Drops the object of ``key`` (only if its uid is ``uid``: a newer object of the same name stays)."""
        cached = self._objects.get(key)
        if cached is None or (uid is not None and cached["metadata"].get("uid") not in (uid, None)):
            return None
        self._unfile(key, cached)
        del self._objects[key]
        return cached

    def _file(self, name: str, key: Key, body: Body) -> None:
        for value in self._indexers[name](body):
            self._index[name].setdefault(value, {})[key] = body

    def _unfile(self, key: Key, body: Body) -> None:
        for name, index in self._indexers.items():
            for value in index(body):
                filed = self._index[name].get(value)
                if filed is not None:
                    filed.pop(key, None)
                    if not filed:
                        del self._index[name][value]
