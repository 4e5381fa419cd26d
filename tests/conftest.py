import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread: the test models are tiny, and on a busy 2-core machine
    two threads spin against other processes and run ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory):
    """A micro build of the tiny model (a few pretraining steps): a real Hugging
    Face checkpoint for trainer and eval tests, built once per session."""
    from thinkgym.trainer.models.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("micro") / "model", steps=20, log=lambda s: None))


def policy_of(config, model, tokenizer, reference=None):
    """A :class:`Policy` sampling with the engine ``config.sampling.engine`` picks."""
    from thinkgym.trainer.engines import make_engine
    from thinkgym.trainer.models.policy import Policy

    return Policy(model, tokenizer, make_engine(config.sampling.engine, model, tokenizer), reference)
