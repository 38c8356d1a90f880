"""The kinds of event the bus carries, each with what it means and what its payload holds.

A kind is ``<area>.<what>``; the subject names the thing it is about (a node's name, a
model's name, a job, a snapshot version), so a reader can follow one thing with ``kind=``
and the subject. Payloads hold public fields only: what ``/api/ai/network/status``,
``/api/ai/state`` or a job's own listing would show anyway, never a token, key or password.
"""

from __future__ import annotations

import re

__all__ = [
    "JOB_TRANSITION",
    "KINDS",
    "MODEL_CREATED",
    "MODEL_DELETED",
    "MODEL_SYNCED",
    "NODE_BREAKER",
    "NODE_DOWN",
    "NODE_UP",
    "SNAPSHOT_SAVED",
    "valid_kind",
]

# subject: the node's name. payload: node_id, url, from, to (node states), event.
NODE_UP = "node.up"
# subject: the node's name. payload: node_id, url, from, to ("offline"), event, error.
NODE_DOWN = "node.down"
# subject: the node's name. payload: node_id, from, state (open | half_open | closed), error.
NODE_BREAKER = "node.breaker"
# subject: "<job kind>/<id>". payload: job_kind, job_id, previous (from), status (to), error.
JOB_TRANSITION = "job.transition"
# subject: the model's name. payload: operation (create | pull | copy), nodes, source (copy).
MODEL_CREATED = "model.created"
# subject: the model's name. payload: nodes.
MODEL_DELETED = "model.deleted"
# subject: the model's name. payload: source, target, blobs_copied, bytes_copied, seconds.
MODEL_SYNCED = "model.synced"
# subject: "v<version>". payload: version, reason, files, bytes.
SNAPSHOT_SAVED = "snapshot.saved"

KINDS: dict[str, str] = {
    NODE_UP: "a node answers its probes again and takes requests (online or degraded)",
    NODE_DOWN: "a node stopped answering its probes and is offline",
    NODE_BREAKER: "a node's circuit breaker moved (open, half_open or closed)",
    JOB_TRANSITION: "a job (optimization, fine-tuning, learning) moved from one state to another",
    MODEL_CREATED: "a model was created, pulled or copied on one or more nodes",
    MODEL_DELETED: "a model was deleted from one or more nodes",
    MODEL_SYNCED: "sync copied a model onto a node to meet its placement",
    SNAPSHOT_SAVED: "a state snapshot version was committed",
}

# Plugins may publish kinds of their own; they must look like the built-in ones.
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}(\.[a-z][a-z0-9_]{0,31}){1,3}")


def valid_kind(kind: object) -> bool:
    """Whether ``kind`` is shaped like a kind (``area.what``, lowercase).

    >>> valid_kind("node.up"), valid_kind("plugin.cache.hit"), valid_kind("Node.Up")
    (True, True, False)
    >>> valid_kind("node"), valid_kind(""), valid_kind(None)
    (False, False, False)
    """
    return isinstance(kind, str) and _KIND.fullmatch(kind) is not None
