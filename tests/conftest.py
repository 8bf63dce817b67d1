"""Test-wide set-up: torch threads set explicitly, once."""
from archer_lite.seeding import set_threads

set_threads(0)
