"""GRPO-family training of causal language models on thinkgym environments."""
