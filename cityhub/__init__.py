"""cityhub: the city hub platform tooling (cluster, toolchain paths, CLI)."""
