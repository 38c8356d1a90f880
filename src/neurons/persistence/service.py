"""The persistence service: versioned snapshots of the durable state, the one code path behind
``neurons state ...``, ``/api/ai/state/...`` and the control plane's automatic saves.

A version is a directory ``vNNNNNN`` under the snapshot path holding one JSON file per
component, plus a row in the store listing each file's sha256 and size. How a save stays
atomic across a crash at any moment:

1. every file is written into a fresh ``.tmp-<pid>-<id>`` directory, each through a ``.part``
   name, fsync'd and renamed (:func:`~neurons.persistence.files.write_durably`);
2. in one write transaction the row is inserted, the directory renamed to ``vNNNNNN`` and
   the parent fsync'd, and only then the transaction commits.

A crash before the commit leaves nothing listed: a temporary directory (skipped by ``ls``) or
an unlisted ``vNNNNNN`` whose number the next save reuses. :meth:`PersistenceService.prune`
sweeps both away. Only a listed version is ever read, verified or restored.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurons.errors import (
    InvalidRequestError,
    NeuronsError,
    SnapshotCorruptError,
    SnapshotNotFoundError,
    StoreError,
)
from neurons.events.kinds import SNAPSHOT_SAVED
from neurons.persistence.components import COMPONENTS, Component
from neurons.persistence.diff import diff_entries
from neurons.persistence.files import fsync_dir, sha256_of, write_durably
from neurons.store.snapshots import SnapshotFile, SnapshotRecord

if TYPE_CHECKING:
    from neurons.config import Settings
    from neurons.events.bus import Publish
    from neurons.store import Store

__all__ = ["FORMAT", "PersistenceService", "Problem"]

log = logging.getLogger(__name__)

FORMAT = 1  # the layout of a component file; a reader refuses one it does not know
TMP_PREFIX = ".tmp-"
_VERSION_DIR = re.compile(r"^v(\d{6,})$")
_TMP_DIR = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+$")
_REASON = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# How many times a save reads the state again, at most, to get two reads that agree.
_STABLE_READS = 3
# A temporary directory older than this is a leftover even if its pid is alive again
# (reused by another process).
_TMP_MAX_AGE_S = 3600.0


@dataclass(frozen=True)
class Problem:
    """A file of a version that does not verify, and why."""

    file: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "problem": self.problem}


class PersistenceService:
    """Save, list, show, diff, verify, restore and prune state snapshots; auto-save."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        components: Sequence[Component] = COMPONENTS,
        *,
        publish: Publish | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.publish = publish  # announces each committed version (snapshot.saved)
        self.root = settings.resolved_snapshot_path
        self.components = {c.name: c for c in components}
        self._save_lock = threading.Lock()  # one save at a time in this process
        self._task: asyncio.Task[None] | None = None

    def directory(self, version: int) -> Path:
        return self.root / f"v{version:06d}"

    # -- saving ----------------------------------------------------------------------------

    def save(self, reason: str = "manual") -> SnapshotRecord:
        """Snapshot every component as a new version, then prune to the configured number."""
        record = self._save(reason, if_changed=False)
        assert record is not None  # only a save "if changed" skips
        return record

    def save_if_changed(self, reason: str = "auto") -> SnapshotRecord | None:
        """Like :meth:`save`, but write nothing (and return None) when every file would be
        identical to the newest version's: automatic saves of an idle system do not push
        the history out."""
        return self._save(reason, if_changed=True)

    def _save(self, reason: str, *, if_changed: bool) -> SnapshotRecord | None:
        if not isinstance(reason, str) or not _REASON.match(reason):
            raise InvalidRequestError(
                "a snapshot reason is 1-32 lowercase letters, digits, '-' or '_', "
                f"starting with a letter; not {reason!r}"
            )
        with self._save_lock:
            files, meta = self._collect()
            if if_changed:
                latest = self.store.snapshots.latest(status=None)
                if latest is not None and latest.status == "complete" and latest.components == meta:
                    return None
            # Each component reads in its own transaction, so a write landing between two
            # reads (a node added between "nodes" and "node_models") tears the version.
            # Collecting again until two reads agree keeps a version one consistent state.
            for _ in range(_STABLE_READS):
                again, again_meta = self._collect()
                if again_meta == meta:
                    break
                files, meta = again, again_meta
            record = self._write(reason, files, meta)
        log.info("state snapshot v%d saved (%s)", record.version, reason)
        self._announce(record)
        try:
            self.prune()
        except (NeuronsError, OSError):
            log.warning("pruning state snapshots after v%d failed", record.version, exc_info=True)
        return record

    def _collect(self) -> tuple[dict[str, bytes], dict[str, SnapshotFile]]:
        files = {
            name: _encode(name, component.collect(self.store, self.settings))
            for name, component in self.components.items()
        }
        return files, {name: SnapshotFile(sha256_of(d), len(d)) for name, d in files.items()}

    def _announce(self, record: SnapshotRecord) -> None:
        """Tell the event bus a version is committed: its number, reason and size only."""
        if self.publish is None:
            return
        try:
            self.publish(SNAPSHOT_SAVED, f"v{record.version}", version=record.version,
                         reason=record.reason, files=len(record.components),
                         bytes=sum(f.bytes for f in record.components.values()))  # fmt: skip
        except Exception:  # the version is saved; a lost announcement must not fail it
            log.exception("announcing state snapshot v%d failed", record.version)

    def _write(
        self, reason: str, files: dict[str, bytes], meta: dict[str, SnapshotFile]
    ) -> SnapshotRecord:
        tmp = self.root / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as exc:
            raise StoreError(f"cannot write a state snapshot under {self.root}: {exc}") from exc

        def place(version: int) -> None:
            final = self.directory(version)
            if final.exists():
                # Under the write lock, with a number no committed row has: the directory of
                # a save that died between this step and its commit.
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync_dir(self.root)

        try:
            for name, data in files.items():
                write_durably(tmp / f"{name}.json", data)
            return self.store.snapshots.add(reason, meta, place)
        except OSError as exc:
            raise StoreError(f"cannot write a state snapshot under {self.root}: {exc}") from exc
        finally:
            # Still there only when the save failed. A directory already placed is left for
            # prune: its number is free again, and another save may be placing it by now.
            shutil.rmtree(tmp, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> builtins.list[SnapshotRecord]:
        """Every listed version, newest first (unfinished and unlisted directories never)."""
        return self.store.snapshots.list()

    def show(self, version: int, component: str | None = None) -> dict[str, Any]:
        """A version's metadata and the number of entries in each component; with
        ``component``, that component's content."""
        record = self.store.snapshots.get(version)
        if component is None:
            counts = {name: len(self._load(record, name)) for name in record.components}
            return {"snapshot": record.to_dict(), "entries": counts}
        if component not in record.components:
            raise SnapshotNotFoundError(
                f"snapshot v{version} has no component {component!r}; it has "
                + ", ".join(record.components)
            )
        return {
            "snapshot": record.to_dict(),
            "component": component,
            "data": self._load(record, component),
        }

    def diff(self, old: int, new: int, components: Iterable[str] | None = None) -> dict[str, Any]:
        """Per component: the entries added, removed and changed from ``old`` to ``new``."""
        before = self.store.snapshots.get(old)
        after = self.store.snapshots.get(new)
        names = sorted(set(before.components) | set(after.components))
        if components is not None:
            shown = set(components)
            names = [n for n in names if n in shown]
        result: dict[str, Any] = {}
        for name in names:
            component = self.components.get(name)
            if component is None:
                continue
            a = component.keyed(self._load(before, name)) if name in before.components else {}
            b = component.keyed(self._load(after, name)) if name in after.components else {}
            result[name] = diff_entries(a, b)
        return {"from": old, "to": new, "components": result}

    # -- integrity -------------------------------------------------------------------------

    def verify(self, version: int | None = None) -> builtins.list[dict[str, Any]]:
        """Recompute every file's sha256 against its row (one version, or all of them) and
        record each version's outcome in its status."""
        records = [self.store.snapshots.get(version)] if version is not None else self.list()
        results = []
        for record in records:
            problems = self._check(record)
            self._record_status(record, problems)
            results.append(
                {
                    "version": record.version,
                    "ok": not problems,
                    "problems": [p.to_dict() for p in problems],
                }
            )
        return results

    def last_good(self, excluding: int | None = None) -> int | None:
        """The newest listed version whose files all verify."""
        for record in self.list():
            if record.version != excluding and not self._check(record):
                return record.version
        return None

    def _check(self, record: SnapshotRecord) -> builtins.list[Problem]:
        folder = self.directory(record.version)
        problems = []
        for name, expected in record.components.items():
            path = folder / f"{name}.json"
            _, problem = _read_checked(path, expected)
            if problem is not None:
                problems.append(Problem(str(path), problem))
        return problems

    def _record_status(self, record: SnapshotRecord, problems: builtins.list[Problem]) -> None:
        status = "corrupt" if problems else "complete"
        if status != record.status:
            with contextlib.suppress(SnapshotNotFoundError):  # pruned meanwhile
                self.store.snapshots.set_status(record.version, status)

    def _corrupt(
        self, record: SnapshotRecord, problems: builtins.list[Problem]
    ) -> SnapshotCorruptError:
        self._record_status(record, problems)
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        good = self.last_good(excluding=record.version)
        hint = "no listed version verifies" if good is None else f"the last good version is v{good}"
        return SnapshotCorruptError(
            f"snapshot v{record.version} is corrupt: {first.file}: {first.problem}{more}; {hint}"
        )

    def _load(self, record: SnapshotRecord, name: str) -> Any:
        """A component's entries, after checking its file against the row."""
        path = self.directory(record.version) / f"{name}.json"
        data, problem = _read_checked(path, record.components[name])
        if data is None:
            raise self._corrupt(record, [Problem(str(path), problem or "unreadable")])
        document = json.loads(data)
        if document.get("format") != FORMAT or document.get("component") != name:
            raise SnapshotCorruptError(
                f"{path} is not a format-{FORMAT} snapshot of {name!r}; "
                "it was written by another neurons"
            )
        return document["entries"]

    # -- restoring -------------------------------------------------------------------------

    def restore(self, version: int) -> dict[str, Any]:
        """Put the node registry, the placements and language memory back exactly as in
        ``version`` (memory only where the version has it: one saved before it existed
        leaves memory as it is).

        Every file of the version is verified first; a corrupt version is refused
        (:class:`SnapshotCorruptError`, naming the file and the last good version). The
        current state is saved first (reason ``pre-restore``), so a restore can be undone.
        Secrets are never restored: each node keeps the token it has now (see
        :meth:`~neurons.store.snapshots.SnapshotRepository.replace_registry`). Jobs,
        sessions, learning runs, keys and settings are not restored.
        """
        record = self.store.snapshots.get(version)
        problems = self._check(record)
        if problems:
            raise self._corrupt(record, problems)
        restorable = [
            c
            for c in self.components.values()
            if c.restorable and (c.name in record.components or not c.optional)
        ]
        missing = [c.name for c in restorable if c.name not in record.components]
        if missing:
            raise InvalidRequestError(f"snapshot v{version} has no {', '.join(missing)}")
        wanted = {c.name: self._load(record, c.name) for c in restorable}
        before = {c.name: c.collect(self.store, self.settings) for c in restorable}
        safety = self.save("pre-restore")
        self.store.snapshots.replace_registry(wanted["nodes"], wanted["placements"])
        for component in restorable:  # the parts that put themselves back (memory)
            component.restore(self.store, wanted[component.name])
        after = {c.name: c.collect(self.store, self.settings) for c in restorable}
        with_token = {n["name"] for n in after["nodes"] if n["has_token"]}
        return {
            "restored": version,
            "pre_restore_version": safety.version,
            "changes": {
                c.name: diff_entries(c.keyed(before[c.name]), c.keyed(after[c.name]))
                for c in restorable
            },
            "tokens_missing": sorted(
                n["name"]
                for n in wanted["nodes"]
                if n.get("has_token") and n["name"] not in with_token
            ),
            "not_restored": sorted(set(record.components) - {c.name for c in restorable}),
        }

    # -- pruning ---------------------------------------------------------------------------

    def prune(self, keep: int | None = None) -> dict[str, Any]:
        """Keep the ``keep`` newest versions (default: the configured maximum), delete the
        rest, and sweep away what crashed saves left (temporary and unlisted directories)."""
        count = self.settings.snapshot_max_versions if keep is None else keep
        swept: builtins.list[str] = []
        dropped = self.store.snapshots.prune(count, lambda known: swept.extend(self._sweep(known)))
        for version in dropped:
            shutil.rmtree(self.directory(version), ignore_errors=True)
        if dropped and self.root.is_dir():
            fsync_dir(self.root)
        return {"removed": dropped, "kept": len(self.list()), "swept": sorted(swept)}

    def _sweep(self, known: set[int]) -> builtins.list[str]:
        """Remove the directories no known version owns; runs under the store's write lock,
        so no save is placing one meanwhile. A temporary directory is removed once its
        process is gone (or it is over an hour old)."""
        if not self.root.is_dir():
            return []
        removed = []
        for entry in self.root.iterdir():
            version = _VERSION_DIR.match(entry.name)
            tmp = _TMP_DIR.match(entry.name)
            if version is not None and int(version.group(1)) not in known:
                pass
            elif tmp is not None and not _alive(int(tmp.group(1)), entry):
                pass
            else:
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        return removed

    # -- automatic saves -------------------------------------------------------------------

    def start(self) -> None:
        """Save every ``snapshot_interval_s`` (when something changed) until :meth:`aclose`;
        an interval of 0 turns automatic saves off, the one at shutdown included."""
        if self.settings.snapshot_interval_s <= 0 or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._autosave(self.settings.snapshot_interval_s), name="state-autosave"
        )

    async def _autosave(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                # Shielded: a cancel at shutdown waits for the files instead of orphaning them.
                await asyncio.shield(asyncio.to_thread(self.save_if_changed, "auto"))
            except Exception:  # a failed save must not end the loop; the next one retries
                log.exception("automatic state snapshot failed")

    async def aclose(self) -> None:
        """Stop automatic saves and take the shutdown snapshot (if anything changed)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await asyncio.to_thread(self.save_if_changed, "shutdown")
        except Exception:
            log.exception("the shutdown state snapshot failed")


def _encode(name: str, entries: Any) -> bytes:
    document = {"component": name, "format": FORMAT, "entries": entries}
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, default=str)
    return (text + "\n").encode("utf-8")


def _read_checked(path: Path, expected: SnapshotFile) -> tuple[bytes | None, str | None]:
    """The file's bytes if they match the row, else None and what is wrong."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    if len(data) != expected.bytes:
        return None, f"{len(data)} bytes, recorded {expected.bytes}"
    digest = sha256_of(data)
    if digest != expected.sha256:
        return None, f"sha256 {digest} does not match the recorded {expected.sha256}"
    return data, None


def _alive(pid: int, path: Path) -> bool:
    """Whether the process that made a temporary directory may still be writing it."""
    try:
        if time.time() - path.stat().st_mtime > _TMP_MAX_AGE_S:
            return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return False
    return True
