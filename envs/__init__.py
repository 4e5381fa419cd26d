"""Gymnasium text environments over verifiable tasks, and their registry."""

from thinkgym.envs.core import ChatSpace, EnvError, Reward, Scored, TextEnv, TextSpace, R1_ZERO_TEMPLATE
from thinkgym.envs.generators import GENERATORS, TaskGenerator, make_generator
from thinkgym.envs.registry import list_envs, make, register
from thinkgym.envs.tasks import build_tasks, read_rows
from thinkgym.envs.think import ThinkFormat

__all__ = ["ChatSpace", "EnvError", "Reward", "Scored", "TextEnv", "TextSpace", "R1_ZERO_TEMPLATE", "GENERATORS",
           "TaskGenerator", "make_generator", "list_envs", "make", "register", "build_tasks", "read_rows", "ThinkFormat"]
