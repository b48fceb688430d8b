"""The SOP language: a YAML document that tells the agent how to do one task type on a portal.

Where things live:

- ``model``: the validated document, one frozen dataclass per step kind (its parse, its
  describe);
- ``expressions``: the one sandboxed Jinja2 environment, for templates and conditions alike;
- ``loader``: YAML with its line map and size limits, ``load_sop``;
- ``validate``: the checks every document passes, with line-numbered errors;
- ``task_types``: the built-in task types; ``library``: their built-in SOPs, and the built-in
  portal profiles (``library/portals``);
- ``store``: the SOP versions an account stored, and its custom task types;
- ``profile``: portal profiles, what every task on one portal shares (their versions are in
  ``shared.portals``).

See docs/sops.md and docs/portals.md.
"""
