"""The inference component type: see README.md in this folder."""
