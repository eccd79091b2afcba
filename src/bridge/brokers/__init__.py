"""Brokers: the embedded paper broker (sim); broker adapters plug into the Executor protocol."""
