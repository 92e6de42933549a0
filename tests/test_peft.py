"""The peft limitation, and that our LoRA paths live with it.

transformers 5's adapter API (``model.add_adapter``, ``load_adapter``) requires a peft newer
than any released one: the locked peft (0.21.2, the newest release) is refused. csrv2's LoRA
finetuning and reasoncache's LoRA baseline therefore use peft's own ``get_peft_model`` and
``PeftModel`` (their package tests train, checkpoint and resume LoRA on that path). When a peft
that transformers accepts is locked, the first test fails: then drop the notes in the csrv2 and
reasoncache READMEs.
"""

from __future__ import annotations

import ast

import peft
import pytest
import torch
from _workspace import members
from packaging.version import Version
from transformers.integrations.peft import MIN_PEFT_VERSION

from kernelkit.testing import assert_close, tiny_causal_lm

TRANSFORMERS_ADAPTER_API = {"add_adapter", "load_adapter", "set_adapter", "enable_adapters"}


def _lora():
    return peft.LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj", "v_proj"])


def test_transformers_adapter_api_refuses_the_locked_peft():
    assert Version(peft.__version__) < Version(MIN_PEFT_VERSION)
    model, _ = tiny_causal_lm()
    with pytest.raises(Exception, match=r"(?i)peft"):
        model.add_adapter(_lora())


def test_no_package_calls_the_transformers_adapter_api():
    calls = []
    for m in members():
        for path in sorted((m.path / "src" / m.import_name).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr in TRANSFORMERS_ADAPTER_API:
                    calls.append(f"{path.name}:{node.lineno} {node.attr}")
    assert not calls, calls


def test_peft_lora_trains_saves_and_reloads_with_the_locked_peft(tmp_path):
    """The path reasoncache's ``--method lora`` evaluation loads adapters by."""
    model, _ = tiny_causal_lm()
    wrapped = peft.get_peft_model(model, _lora())
    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, p in wrapped.named_parameters() if p.requires_grad)
    ids = torch.arange(12).reshape(2, 6) % model.config.vocab_size
    loss = wrapped(input_ids=ids, labels=ids).loss
    loss.backward()
    with torch.no_grad():
        for p in trainable:
            p.add_(0.5 * torch.sign(p.grad) + 0.01)  # move B off zero so the adapter matters
    wrapped.save_pretrained(str(tmp_path), safe_serialization=True)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    base, _ = tiny_causal_lm()
    reloaded = peft.PeftModel.from_pretrained(base, str(tmp_path))
    with torch.no_grad():
        expected, got = wrapped(input_ids=ids).logits, reloaded(input_ids=ids).logits
        assert_close(got, expected)
        assert not torch.allclose(got, tiny_causal_lm()[0](input_ids=ids).logits)
