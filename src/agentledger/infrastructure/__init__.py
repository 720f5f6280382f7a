"""Adapters to the outside world: the store, processes, the host, migrations."""
