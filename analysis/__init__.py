"""One-off analyses behind figures in docs/ (run from a source checkout: `python -m analysis.<name>`).

Not part of the installed package: they read the checkout's data and print figures, nothing imports them.
"""
