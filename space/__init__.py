"""The Space's own layer: the endpoint functions the UI calls and the text a reader sees (app.py only wires)."""
