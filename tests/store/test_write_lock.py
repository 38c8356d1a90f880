"""The write lock the repositories rely on, raced from several engines (several processes'
worth of connections): SQLite's own, PostgreSQL's advisory lock. Without it on PostgreSQL a
compare-and-set move could have two winners, two upserts of one new key could both insert,
and an event reader could step past an id committed late."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from neurons.errors import JobNotFoundError, JobStateError
from neurons.jobs.leases import LeaseTable
from neurons.store import Store, open_store
from neurons.store.finetune import jobs_table

_RACERS = 6


@contextmanager
def _stores(db_url: str, count: int = _RACERS) -> Iterator[list[Store]]:
    stores = [open_store(db_url) for _ in range(count)]
    try:
        yield stores
    finally:
        for store in stores:
            store.close()


def _race(stores: list[Store], work: Callable[[int, Store], object]) -> list[object]:
    """Run ``work(i, store)`` in one thread per store, all released at once; each result or
    the exception it raised, in store order."""
    start = threading.Barrier(len(stores))
    results: list[object] = [None] * len(stores)

    def run(i: int, store: Store) -> None:
        start.wait()
        try:
            results[i] = work(i, store)
        except BaseException as exc:  # returned to the test, which asserts on it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _leases(store: Store) -> LeaseTable:
    return LeaseTable(
        store.engine,
        jobs_table,
        what="fine-tuning job",
        not_found=JobNotFoundError,
        refused=JobStateError,
    )


def test_a_racing_lease_move_has_one_winner(db_url: str) -> None:
    with _stores(db_url) as stores:
        job = stores[0].fine_tuning.create(
            {"base_model": "m", "target_model_name": "t", "data_type": "text"}
        )

        def take(i: int, store: Store) -> str:
            _leases(store).transition(job.job_id, ("pending",), "running", runner=f"r{i}")
            return f"r{i}"

        results = _race(stores, take)
        winners = [r for r in results if isinstance(r, str)]
        assert len(winners) == 1, results
        assert all(isinstance(r, JobStateError) for r in results if r not in winners)
        stored = stores[0].fine_tuning.get(job.job_id)
        assert (stored.status, stored.runner, stored.attempts) == ("running", winners[0], 1)


def test_racing_upserts_of_one_new_row_all_succeed(db_url: str) -> None:
    with _stores(db_url) as stores:

        def upsert(i: int, store: Store) -> None:
            store.kv.set("fresh", i)
            store.placements.set("m", replicas=i + 1)
            store.nodes.upsert("same", f"http://n/{i}", "ollama")

        assert _race(stores, upsert) == [None] * len(stores)
        assert stores[0].kv.get("fresh") in range(len(stores))
        assert [p.model for p in stores[0].placements.list()] == ["m:latest"]
        assert [n.name for n in stores[0].nodes.list()] == ["same"]


def test_an_event_reader_misses_no_event_appended_concurrently(db_url: str) -> None:
    with _stores(db_url, 4) as stores:
        writing = threading.Event()
        writing.set()
        seen: list[int] = []

        def read() -> None:
            after = 0
            while True:
                last_round = not writing.is_set()
                for event in stores[0].events.list(after=after):
                    seen.append(event.id)
                    after = event.id
                if last_round:
                    return

        reader = threading.Thread(target=read)
        reader.start()
        try:
            results = _race(
                stores[1:],
                lambda i, store: [store.events.append("tick", str(i)).id for _ in range(20)],
            )
        finally:
            writing.clear()
            reader.join()
        appended = sorted(i for ids in results for i in ids)  # type: ignore[attr-defined]
        assert seen == appended
