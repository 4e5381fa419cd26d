import pytest


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory):
    """A micro build of the tiny model (a few pretraining steps): a real Hugging
    Face checkpoint for trainer and eval tests, built once per session."""
    from thinkgym.trainer.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("micro") / "model", steps=20, log=lambda s: None))
