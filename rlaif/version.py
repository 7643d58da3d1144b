"""rlaif's version, in a module of its own so that any module can read it without importing the
package's __init__ (which imports the whole public API, and would make every such import a cycle)."""
from __future__ import annotations

__version__ = "0.1.0"
