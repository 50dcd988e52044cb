"""The search: curriculum spaces in YAML, Ray Tune trials with ASHA and Optuna, and the report.

``python -m search.run --space spaces/quickstart.yaml`` is the main job; see ``search.run``.
"""
