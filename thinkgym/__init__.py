"""thinkgym: verifiable-reward text environments and a GRPO-family trainer."""

__version__ = "0.1.0"
