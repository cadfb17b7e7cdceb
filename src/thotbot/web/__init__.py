"""The HTTP edge: pure ASGI middlewares between the server and the front doors.

The /v1 guard (``guard``: key verification is ``thotbot.auth``'s, without ASGI), trusted proxies
(``proxies``: the parsing is ``thotbot.core.proxies``), HSTS (``hsts``) and the slash redirects
(``slashes``).
"""
