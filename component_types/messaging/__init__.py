"""The messaging component type: see README.md in this folder."""
