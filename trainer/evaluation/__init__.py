"""Sampling models on environment tasks and scoring them: ``samples.py`` (shared
by the trainer's held-out accuracy and ``thinkgym eval``), ``evaluate.py`` (the
``thinkgym eval`` run: pass@k, maj@k, rewards), ``options.py`` (its options,
checked before torch loads) and ``passk.py`` (the unbiased estimators)."""
