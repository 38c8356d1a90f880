"""Model library: catalog, discovery, search, recommendations, compatibility."""

from __future__ import annotations
