"""The pure domain: the Session aggregate, its events and the rules they obey.

Nothing in this package touches the clock, the disk, the network or processes;
callers pass in what the rules need (``now``, probe results).
"""
