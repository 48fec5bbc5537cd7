"""Pulumi ComponentResources that build the city hub."""
