"""Hypothesis profiles.

``ci`` (the default): derandomised, so the gate a change must pass is reproducible; a failure
prints the example to reproduce it. ``explore``: a fresh random draw on every run, for hunting
new counterexamples: ``python -m pytest -q --hypothesis-profile explore``. Every counterexample
found that way becomes a plain regression test.
"""

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("ci")
