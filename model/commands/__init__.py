"""The command lines of model/ (`python -m model.X` runs model/X.py, a thin entry point into the module of the same
name here): cli.py is their convention (flags from ModelConfig, exit statuses, logging), the others read flags,
call the core and training rooms and print; nothing of the core imports them."""
