"""RocksDB tables with one memory budget per worker (Faust wiring, no logic).

Faust opens one RocksDB database per table partition (five tables × eight partitions
= 40 databases by default), and each gets its own block cache and its own
memtables. Bounded per database (:func:`autopilot.tables.rocksdb_options`) that is
still several hundred MB in total, and a 20-minute soak of ``bench/throughput.py``
showed the worker's resident memory growing all along (155 → 390 MB) while the same
run on ``memory://`` stayed flat: RocksDB was filling its per-database bounds.

Here every database of the worker shares **one** LRU block cache of
``AUTOPILOT_ROCKSDB_MEMORY_MB`` (default 64 MiB) that also holds the index and
filter blocks, and **one** write-buffer manager that charges the memtables to that
same cache (half of it at most), as RocksDB recommends for many databases in one
process (https://github.com/facebook/rocksdb/wiki/Write-Buffer-Manager). The
worker's RocksDB memory is then capped by one number, whatever the partition count.

:class:`Table` is Faust's ``Table`` setting (``faust.App(..., Table=...)``, a
documented extension point); it differs from ``faust.Table`` only in building
:class:`Store` for ``rocksdb://`` URLs. :class:`Store` is Faust's RocksDB store (via
``rocksdict``) with :class:`BoundedRocksDBOptions`.
"""

from __future__ import annotations

import functools
from typing import Any

import faust
import rocksdict
from faust.exceptions import ImproperlyConfigured
from faust.stores import rocksdb as faust_rocksdb
from faust.types import StoreT
from yarl import URL

from autopilot.app import settings

__all__ = ["BoundedRocksDBOptions", "Store", "Table", "shared_cache", "write_buffer_manager"]


def _budget(capacity_bytes: int | None) -> int:
    return capacity_bytes or settings().rocksdb_memory_mb * 1024 * 1024


@functools.cache
def shared_cache(capacity_bytes: int | None = None) -> rocksdict.Cache:
    """The process's RocksDB block cache (LRU), ``AUTOPILOT_ROCKSDB_MEMORY_MB`` MiB.

    Args:
        capacity_bytes: the capacity; ``None`` reads the setting. One cache per
            distinct value (the worker only ever asks with ``None``).
    """
    return rocksdict.Cache(_budget(capacity_bytes))


@functools.cache
def write_buffer_manager(capacity_bytes: int | None = None) -> rocksdict.WriteBufferManager:
    """The process's write-buffer manager: memtables of every database together use
    at most half of :func:`shared_cache` (charged to it, so one cap holds for both)."""
    return rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
        _budget(capacity_bytes) // 2, False, shared_cache(capacity_bytes))


class BoundedRocksDBOptions(faust_rocksdb.RocksDBOptions):
    """Faust's RocksDB options with the shared cache and write-buffer manager.

    Args:
        capacity_bytes: the budget (``None``: ``AUTOPILOT_ROCKSDB_MEMORY_MB``).
        **kwargs: Faust's :class:`faust.stores.rocksdb.RocksDBOptions` arguments
            (``write_buffer_size``, ``max_write_buffer_number``, …); only the
            ``rocksdict`` driver is supported.
    """

    def __init__(self, capacity_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__(**{**kwargs, "use_rocksdict": True})
        self.capacity_bytes = capacity_bytes

    def as_options(self) -> rocksdict.Options:
        """Faust's options, then the shared block cache (index and filter blocks in
        it too) and the shared write-buffer manager."""
        options = super().as_options()
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(shared_cache(self.capacity_bytes))
        table.set_cache_index_and_filter_blocks(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(write_buffer_manager(self.capacity_bytes))
        return options


class Store(faust_rocksdb.Store):
    """Faust's RocksDB store opening its databases with :class:`BoundedRocksDBOptions`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.use_rocksdict:
            raise ImproperlyConfigured("autopilot's RocksDB tables need the rocksdict driver")
        self.rocksdb_options = BoundedRocksDBOptions(**(self.options or {}))


class Table(faust.Table):
    """``faust.Table`` whose ``rocksdb://`` store is :class:`Store`."""

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        if str(url).partition(":")[0] != "rocksdb":
            return super()._new_store_by_url(url)
        return Store(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )
