"""Plain handler functions, one module per concern; main.py registers them with kopf."""
