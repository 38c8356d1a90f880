"""Who may do what: API keys with scopes and limits, node tokens, and the audit trail.

- :mod:`~neurons.auth.scopes`: the four scopes and which one each route needs;
- :mod:`~neurons.auth.keys`: secrets (``nk-…``), their hashes, and a key's validated spec;
- :mod:`~neurons.auth.limits`: the per-key limits policy (requests and tokens per minute,
  requests in flight) and its in-memory implementation;
- :mod:`~neurons.auth.service`: the one service the REST routes, the CLI and the control
  plane's middleware call;
- :mod:`~neurons.auth.sealing`: node tokens sealed before they reach the store.

The HTTP edge (the middleware, the surfaces' error shapes) lives in :mod:`neurons.api`.
"""
