"""ml_collections config files (``get_config()``), importable so they can build on each other."""
