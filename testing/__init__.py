"""What the tests share (exported models, servers, browsers, Keras files), kept out of the installed package:
the tests beside the modules (ember/**/*_test.py) and those in tests/ import it as `testing.<area>`, found
through pytest's `pythonpath` (pyproject.toml)."""
