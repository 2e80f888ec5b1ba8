"""The worker's RocksDB tables share one memory budget (tables/store.py), on real
RocksDB databases (rocksdict)."""

from __future__ import annotations

import os
from pathlib import Path

import faust
import rocksdict
from autopilot.tables import baselines, rocksdb_options
from autopilot.tables.store import BoundedRocksDBOptions, Store, Table, shared_cache

from autopilot.app import app

MIB = 1024 * 1024


def test_the_app_builds_its_tables_with_the_bounded_store() -> None:
    assert isinstance(baselines, Table)
    assert app.conf.Table is Table


def test_rocksdb_urls_get_the_bounded_store_and_memory_urls_do_not(tmp_path: Path) -> None:
    rocks = faust.App("store-test-rocks", datadir=str(tmp_path / "a"), store="rocksdb://",
                      Table=Table)
    memory = faust.App("store-test-memory", datadir=str(tmp_path / "b"), store="memory://",
                       Table=Table)
    # App.Table is typed as the TableT interface; the private _new_store is faust.Table's.
    rocks_table, memory_table = rocks.Table("t", options=rocksdb_options()), memory.Table("t")
    assert isinstance(rocks_table, faust.Table) and isinstance(memory_table, faust.Table)
    assert isinstance(rocks_table._new_store(), Store)
    assert not isinstance(memory_table._new_store(), Store)


def test_databases_share_one_cache_and_stay_within_its_capacity(tmp_path: Path) -> None:
    budget = 8 * MIB
    options = BoundedRocksDBOptions(capacity_bytes=budget, **rocksdb_options())
    dbs = [options.open(tmp_path / f"db{i}") for i in range(4)]
    value = os.urandom(1024)
    for round_ in range(3):  # ~48 MiB written, several flushes per database
        for i, db in enumerate(dbs):
            for k in range(4096):
                db[f"{i}-{k}".encode()] = value + bytes([round_])
    for i, db in enumerate(dbs):  # read back: the cache now holds data blocks
        for k in range(0, 4096, 7):
            assert db[f"{i}-{k}".encode()] == value + bytes([2])
    for db in dbs:  # memtables waiting for a background flush are charged until
        db.flush(wait=True)  # written; on a busy machine that flush lags the writes
    cache = shared_cache(budget)
    usage = cache.get_usage()
    for db in dbs:
        db.close()
    # Memtables are charged to the cache too (write-buffer manager), so one number
    # bounds the lot; LRU capacity is a soft limit (entries in use may exceed it).
    assert 0 < usage <= budget * 1.25, usage
    assert isinstance(cache, rocksdict.Cache)
