"""Model evaluation: metrics, the report and its plots, DARTS vs back-off comparisons.

Used by the trainer, `bench/` and tests; nothing here serves requests.
"""
