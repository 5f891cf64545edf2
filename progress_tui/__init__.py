"""progress-tui: follow and drive the shared calculation from a terminal (Textual).

One module per job, each floor importing only from its own and those below it
(tests/test_layers.py keeps them so):

- pure state, no Textual: :mod:`.panel`, what the calculation panel shows, derived from
  the latest snapshot; :mod:`.status`, where the app stands with its server (the
  connection, what may be sent now and the words when not, a run lost across a
  reconnect); :mod:`.wrapping`, lines broken between words; :mod:`.mailbox`, what the
  network worker hands the screen, the latest truth, bounded; :mod:`.ends`, which ends
  of a run the app tells of (``--notify``);
- Textual's seams: :mod:`.messages`, the worker's wake-up; :mod:`.toasts`, where the
  notifications stand, the one module that knows Textual's toast widgets;
  :mod:`.terminal`, raw sequences to the terminal through Textual's driver;
- :mod:`.widgets`, one widget per module, and :mod:`.screens`, the help screen;
- :mod:`.app`: :class:`~.app.ProgressApp`, its layout in ``app.tcss``;
- :mod:`.cli`: ``progress-tui``.

The rest is progress_client's, shared with progress-ctl: the connection, its reconnects
and failover (the backoff is ``progress_client/reconnect.py``'s ``ReconnectPolicy``,
which :mod:`.cli` builds from ``--reconnect-initial`` and ``--reconnect-cap``), and the
words for people (``progress_client/wording.py``). A refusal from the server is its own
sentence, shown as it comes under a title from :data:`.status.ERROR_TITLES`.
"""
