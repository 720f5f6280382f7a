"""The long-running processes: thin loops over the service layer's use cases.

A supervisor (one per session, ``supervisor.py``), the daemon (one per host
and store, ``daemon.py``) and the threads the daemon runs (the log follower,
``follower.py``; webhook delivery, ``webhook_dispatch.py``; on-stop hooks)
decide nothing themselves: they wait, call a use case of ``application/``
and wait again. Entry points start them; they get their store, machine and
agents from the composition root (``bootstrap.py``), below them.
"""
