"""The tasks of the tiny built-in model (:mod:`thinkgym.trainer.models.tiny`): its
environment, and the generator seeds that keep its held-out tasks out of
pretraining. Torch-free, so the default config is built without loading torch.
"""

TINY_ENV = {
    "id": "thinkgym/Math-v0",
    "generator": "arithmetic",
    "difficulty": {"digits": 2, "terms": 2, "ops": "+-"},
    "style": "text",
    "prompt": "{question}",
}
"""The environment the tiny model is trained for: ``thinkgym.make(TINY_ENV["id"],
seed=..., **{k: v for k, v in TINY_ENV.items() if k != "id"})``."""

EVAL_SEED = 0
"""Generator seed of the evaluation tasks."""
HELD_OUT_TASKS = 1000
"""The first this many tasks of ``EVAL_SEED`` are never pretrained on."""
PRETRAIN_SEED = 1
"""Generator seed of the pretraining tasks."""
