"""A benchmark of the full-screen client: key-to-screen latency and CPU (issue 14).

``python -m chatclient.bench`` runs a real server, the real client in a
pseudo-terminal and a feeder connection; see ``__main__`` for the options.
"""
