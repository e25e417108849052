"""Shared test setup: no hub access, and the embedded SmolLM2 loaded once per session.

Run: ``pytest -q`` (fast tier) or ``pytest -q -m slow`` (end-to-end runs on the embedded model).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct, converted once into the user cache."""
    from grpo.modeling.models import load_model

    model, tokenizer = load_model("embedded:smollm2-135m-instruct")
    return model, tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded SmolLM2's tokenizer alone (the recipe tests' prompts and labels); a module may define its own."""
    from grpo.modeling.models import EMBEDDED_SMOLLM2, load_tokenizer

    return load_tokenizer(EMBEDDED_SMOLLM2)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: tiny models gain nothing from threads, and on a shared 2-core CPU
    OpenMP spinning makes two threads many times slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
