"""Command-line entry points: ``seqloom <command>`` and one ``seqloom-<command>`` script each."""
