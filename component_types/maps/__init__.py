"""The maps component type: see README.md in this folder."""
