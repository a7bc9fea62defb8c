"""Serving: run a saved model on one image and explain the answer; imports the core, never training."""
