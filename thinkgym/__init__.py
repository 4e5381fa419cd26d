"""thinkgym: verifiable-reward text environments and a GRPO-family trainer."""

from thinkgym.envs import ThinkFormat, TextEnv, Reward, list_envs, make, register

__version__ = "0.1.0"
__all__ = ["make", "register", "list_envs", "TextEnv", "Reward", "ThinkFormat", "__version__"]
