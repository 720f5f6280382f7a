"""Entry points: they translate arguments and exit codes, and hold no logic of their own."""
