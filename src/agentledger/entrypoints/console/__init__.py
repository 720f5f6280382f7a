"""``agentledger console``: the log, the projections and the audit as a local web application.

An entry point like the CLI: every page asks the same projections and
application services the commands ask (``list``, ``status``, ``why``,
``history``, ``timeline``, ``replay``, ``verify``, ``hosts``, ``webhooks``,
``daemon status``) and only turns their answers into HTML. Nothing here holds
a second copy of a query or a rule.

- ``app.py``: the ASGI application (Starlette) and its routes;
- ``pages.py``: what each page shows, gathered from the store;
- ``live.py``: one thread follows the log and tells every open page (Server-Sent Events);
- ``guard.py``: the per-run token and CSRF check that actions need;
- ``serving.py``: binding the address and running the server (uvicorn), for the command and the daemon;
- ``templates/`` and ``static/``: Jinja2 pages (autoescaped) and the one script and stylesheet, shipped in the package.
"""
