"""The clients' side without a screen; progress-tui builds its screen on top of it.

One module per job, each importing only those listed before it:

- :mod:`.wording`: facts worded for people (who did it, clock time, durations,
  printable text, exceptions);
- :mod:`.reconnect`: the backoff; :mod:`.failover`: which URL next, after what wait;
- :mod:`.failures`: what went wrong and its sentence; :mod:`.events`: the events and
  the decoding of one connection's messages into them;
- :mod:`.connection`: the connection guarded against a flooding server;
- :mod:`.client`: :class:`~.client.ProgressClient`, which connects, receives, sends
  and closes;
- :mod:`.options`: the command-line options both clients share;
- :mod:`.ctl`: ``progress-ctl``, for scripts.
"""
