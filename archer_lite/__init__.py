"""archer_lite: a small, readable ArCHer (hierarchical multi-turn RL for LM agents) for teaching."""
from archer_lite.seeding import set_seed

__version__ = "0.1.0"
__all__ = ["set_seed", "__version__"]
