"""The test suite as a package, so `from tests.x import ...` finds this folder even where an installed
distribution (verl 0.9 does) ships its own top-level `tests` package into site-packages."""
