"""Bridges from sparserl's sparse core and structured pruner to other RL libraries.

Each integration lives in its own module and imports its library only there, so importing
``sparserl.integrations`` needs nothing extra:

* ``sparserl.integrations.sb3``: callbacks for Stable-Baselines3 (``pip install 'sparserl[sb3]'``).
"""
