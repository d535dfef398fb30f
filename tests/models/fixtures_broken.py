"""A module that fails while being imported, for the loader's error path."""

raise RuntimeError("this module refuses to import")
