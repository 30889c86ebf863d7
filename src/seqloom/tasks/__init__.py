"""Tasks: how data is loaded and batched for a kind of problem."""
