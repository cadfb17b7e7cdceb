"""The pure core: rules and shapes with no I/O and no web framework.

Key format and hashing, identities and who acted, dates, typed errors and their problem+json form,
User-Agent parsing, redaction of secrets. Every other layer may import from here; nothing here imports
from the rest of thotbot (see docs/ARCHITECTURE.md).
"""
