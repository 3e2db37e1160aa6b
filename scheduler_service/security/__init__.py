"""Security of the scheduler: bearer tokens, roles and the method table, TLS, exposure.

Nothing here knows the servicers: :class:`~.access.Guard` turns a call's credentials
(``authorization`` metadata, the verified client certificate) into a
:class:`~.access.Caller` or refuses it; ``api/server.py`` asks it once per call, before the
request is decoded, and hands the caller to the servicer method as a plain argument.
"""
