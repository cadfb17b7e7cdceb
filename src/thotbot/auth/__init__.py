"""Authentication without ASGI: the key verifier, its in-memory cache of verified keys, and refusals.

The ASGI guard that calls the verifier on every /v1 request is ``thotbot.web.guard``.
"""
