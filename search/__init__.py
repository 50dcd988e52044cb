"""The search: curriculum spaces in YAML, Ray Tune trials with ASHA and Optuna, and the report.

Two halves. The search itself (``space``, ``validation``, ``distributions``, ``constraints``, ``trials``,
``trainable``, ``scheduler``, ``optuna_glue``, ``live``, ``layout``, ``run``) runs trials under Ray;
``python -m search.run --space spaces/quickstart.yaml`` is the main job. The report (``search.report``,
a package) reads what the search wrote, without Ray: ``python -m search.report <experiment dir>``.
"""
