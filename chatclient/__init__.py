"""A terminal chat client for chatserver: a full-screen prompt_toolkit app and a script mode.

It speaks the wire contract through ``chatserver.protocol`` (one copy of the
framing for server, client and tests).
"""
