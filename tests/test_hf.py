"""feedbackkit.logprob.from_hf on small randomly initialised transformers models, against the
model's own logits path."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from feedbackkit.logprob import from_hf  # noqa: E402


def gpt2():
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=101, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config)


def llama():
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=101,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return transformers.LlamaForCausalLM(config)


def logits_path(model, input_ids, attention_mask, labels):
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    target = labels.masked_fill(attention_mask == 0, -100)[:, 1:]
    logp = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp.masked_fill(target == -100, 0)


@pytest.mark.parametrize("make", [gpt2, llama])
def test_matches_the_model_logits_path_with_gradients(make):
    torch.manual_seed(0)
    model = make().float().eval()
    input_ids = torch.randint(1, 101, (3, 12))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0  # right padding
    labels = input_ids.clone()
    labels[:, :4] = -100  # prompt tokens
    ours = from_hf(model, input_ids, attention_mask, labels, vocab_tile=32)
    expected = logits_path(model, input_ids, attention_mask, labels)
    assert ours.shape == (3, 11)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert (ours[:, :3] == 0).all() and (ours[1, 8:] == 0).all()

    weight = model.get_output_embeddings().weight
    (grad_ours,) = torch.autograd.grad(ours.sum(), weight)
    (grad_expected,) = torch.autograd.grad(
        logits_path(model, input_ids, attention_mask, labels).sum(), weight
    )
    torch.testing.assert_close(grad_ours, grad_expected, rtol=1e-4, atol=1e-5)


def test_refuses_post_processed_logits():
    model = gpt2()
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(NotImplementedError, match="final_logit_softcapping"):
        from_hf(model, torch.randint(0, 101, (1, 5)))
