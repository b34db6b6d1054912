"""The hedging library: DARTS over the taxonomy, its λ calibration, and the `Hedger` serving uses.

Pure numpy, no service imports: the hedger worker hedges new classifications with it, and the
trainer calibrates and evaluates with the same code.
"""
