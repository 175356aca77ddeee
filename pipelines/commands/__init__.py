"""Command groups of the ``dynamargin`` CLI; each module exposes ``register(app)``."""
