"""The `hyperprompt` command line. Nothing imports this package (it sits on top)."""
