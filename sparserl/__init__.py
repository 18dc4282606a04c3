"""sparserl: train small (sparse or structurally pruned) deep-RL agents.

Library entry points: :class:`sparserl.config.TrainConfig` + :class:`sparserl.trainer.Trainer`
for whole runs, :mod:`sparserl.sparse` and :mod:`sparserl.structured` for any torch model.
"""
__version__ = "0.1.0"
