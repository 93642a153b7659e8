"""``heteroscale demo``: the live controller against a simulated P/D cluster on one machine.

Needs the ``demo`` extra (``pip install 'heteroscale[demo]'``: kmock for the Kubernetes API fake) and
a ``prometheus`` binary on PATH. Everything listens on 127.0.0.1.
"""
