"""The merge engine (pure functions, no I/O) and the reference client replica."""
