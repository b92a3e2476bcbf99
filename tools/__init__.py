"""Odoo-free helpers of bj_api_sync: transport, redaction, JSON encoding, signing.

Nothing is imported here on purpose; import the submodule you need, e.g.
``from ..tools import transport``.
"""
