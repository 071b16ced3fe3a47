"""Held-out measures of model versions: how each does on inputs it was never trained on.

``python -m evaluation models/sentiment/2 models/digits/2 --write`` measures each version folder
offline (:mod:`evaluation.measures`) on the held-out sets (:mod:`evaluation.sets`) and writes
the figures into its ``metadata.json`` under ``measures``. The tests check that every figure is
the same through each of the service's protocols.

It reads uploads as the service does (``app.inputs``) and the data sets as training does
(``training.data``): it is the one place that imports both, so that the app and the training
never import each other.
"""
