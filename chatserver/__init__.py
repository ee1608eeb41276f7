"""chatserver: an asyncio chat server speaking a small framed JSON protocol.

Kept light on purpose: ``chatclient`` imports ``chatserver.protocol`` and must
not pull in the server with it.
"""

__version__ = "0.1.0"
