"""The agent: carries out an SOP in a browser, the way a trained person would.

- ``interpreter``: ``run_sop``, the portal profile's sign-in and prelude, walking the steps,
  control flow, re-sign-in, outcomes;
- ``page``: the ``Page`` object for navigation, waits, checks, overlays and secret rules;
- ``handlers``: the registry from step dataclass to handler;
- ``actions``, ``login`` (also the profile's sign-in), ``extraction``: the leaf handlers;
  ``locators``: finding elements.
"""
