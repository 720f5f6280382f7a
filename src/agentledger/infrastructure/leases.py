"""Named leases in a PostgreSQL ledger's ``leases`` table: a claim no transaction pooler takes a connection for.

Through a transaction pooler a lock can outlast a transaction only by keeping
that transaction open, and with it one of the pool's few server connections,
for the holder's whole life. A lease is a row instead: taking it, renewing it
and giving it back are each one statement in a transaction of its own, so the
holder keeps no server connection between them. The price is the hand-over: a
holder that dies without giving its lease back holds it until it runs out,
unless the taker can see that the holder is dead (``dead=``: the holder the
taker has found dead, replaced in the same statement, so two takers that both
found it dead cannot both win).

Times are the server's (epoch seconds of ``clock_timestamp()``): no client's
clock moves an expiry. Holders are compared as text, so a holder's record must
be written the same way at every renewal (``holder_text``).
"""

from __future__ import annotations

from typing import Any

import orjson

_NOW = "extract(epoch FROM clock_timestamp())"

_TAKE = f"""
INSERT INTO leases (name, holder, expires_at) VALUES (%(name)s, %(holder)s, {_NOW} + %(seconds)s)
ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
 WHERE leases.holder = EXCLUDED.holder OR leases.expires_at < {_NOW} OR leases.holder = %(dead)s
RETURNING 1
"""


def holder_text(holder: dict[str, Any]) -> str:
    """The one spelling of a holder's record in the table (sorted keys: the same record, the same text)."""
    return orjson.dumps(holder, option=orjson.OPT_SORT_KEYS).decode()


def take(connection: Any, name: str, holder: str, seconds: float, *, dead: str | None = None) -> bool:
    """Take lease ``name`` for ``seconds``, or renew it if ``holder`` has it: True if ``holder`` now holds it.

    Refused while another holder's lease runs, unless that holder is ``dead`` (the record the caller found
    and judged gone).
    """
    row = connection.execute(_TAKE, {"name": name, "holder": holder, "seconds": seconds, "dead": dead}).fetchone()
    return row is not None


def current_holder(connection: Any, name: str) -> str | None:
    """The holder of lease ``name`` while it runs; None if nobody holds it (or the last holder's ran out)."""
    row = connection.execute(f"SELECT holder FROM leases WHERE name = %s AND expires_at >= {_NOW}",
                             (name,)).fetchone()
    return None if row is None else str(row[0])


def give_back(connection: Any, name: str, holder: str) -> None:
    """End ``holder``'s lease ``name`` now (nothing if another holds it)."""
    connection.execute("DELETE FROM leases WHERE name = %s AND holder = %s", (name, holder))
