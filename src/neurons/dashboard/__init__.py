"""The web dashboard at ``/dashboard``: hand-written HTML, CSS and ES modules shipped in the
package (no CDN, no build step, no Node.js), served by the control plane. The pages read the
same APIs any client does, with the key the user types in; see :mod:`.routes`."""

from __future__ import annotations

from neurons.dashboard.routes import STATIC_DIR, router

__all__ = ["STATIC_DIR", "router"]
