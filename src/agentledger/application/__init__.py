"""The service layer: commands on sessions, each one load-decide-save against the log."""
