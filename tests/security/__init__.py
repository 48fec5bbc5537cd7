"""Attacks on the data paths of the component types, played by one department against another."""
