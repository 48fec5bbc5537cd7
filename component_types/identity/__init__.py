"""The identity component type: see README.md in this folder."""
