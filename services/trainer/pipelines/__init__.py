"""Pipelines composed of the core: ``train`` (one split), ``cv`` (folds + final network + ship),
``ensemble`` (members in one graph), ``refit`` (quick refit and full retrain from feedback), ``quantize`` (an INT8 copy of a version)."""
