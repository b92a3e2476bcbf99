"""Test tooling of bj_api_sync, plain Python (no Odoo import).

- ``http_server``: the scripted HTTP server of ``tests/`` and ``tests_plain/``;
- ``processes``: free ports, child processes that die with their parent;
- ``odoo``: find Odoo, create/drop a database, run ``odoo-bin``, talk JSON-RPC
  (used by ``e2e/`` and ``bench/``).
"""
