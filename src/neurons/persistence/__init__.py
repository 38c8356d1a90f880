"""Seed 003's persistence system: versioned snapshots of the durable state (the node registry,
placements, jobs, sessions, learning runs, keys' public metadata, settings, language memory)
as JSON files with sha256 checksums and a row per version in the store; atomic saves,
automatic saves, pruning, verification, diffs and the restore of the registry and of the
memory. No secret is ever written.
"""

from __future__ import annotations

from neurons.persistence.components import COMPONENTS, Component
from neurons.persistence.service import PersistenceService, Problem

__all__ = ["COMPONENTS", "Component", "PersistenceService", "Problem"]
