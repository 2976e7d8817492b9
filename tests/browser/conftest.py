"""The browser tests' fixtures, defined in `browser_support.py`.

Test modules import helpers from `browser_support` by that name: `from conftest import ...`
would pick whichever of the suite's several conftest modules was imported last."""

from browser_support import browser, database, screenshot, server, signed_in

__all__ = ["browser", "database", "screenshot", "server", "signed_in"]
