"""Research run from the command line only, never by the trainer worker (label issues)."""
