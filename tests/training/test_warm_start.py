"""init_from: a classifier fine-tuned from a pre-trained MLM starts with the MLM's input adapter and encoder."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from perceiverio.core.config import DecoderConfig, EncoderConfig
from perceiverio.tasks import (
    ImageClassifier,
    ImageClassifierConfig,
    MaskedLanguageModel,
    MaskedLanguageModelConfig,
    SequenceClassifierConfig,
)
from perceiverio.training import SequenceClassificationTask
from perceiverio.training.warm_start import copy_matching

ENCODER = EncoderConfig(num_latents=8, num_latent_channels=32, num_self_attention_heads=2, num_self_attends_per_block=1)
MLM = MaskedLanguageModelConfig.tiny(max_seq_len=32, encoder=ENCODER)
SEQ = SequenceClassifierConfig.tiny(
    max_seq_len=32, encoder=ENCODER, decoder=DecoderConfig(num_query_channels=32, use_query_residual=True)
)


def _fit_start_weights(module: SequenceClassificationTask, **trainer_kwargs) -> dict[str, torch.Tensor]:
    seen = {}

    class Record(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.update({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})

    examples = [{"input_ids": torch.randint(6, 262, (32,)), "labels": torch.tensor(i % 2)} for i in range(4)]
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record()],
        **trainer_kwargs,
    )
    trainer.fit(module, DataLoader(examples, batch_size=4))
    return seen


def test_fit_starts_from_the_mlm_encoder_and_keeps_the_new_decoder(tmp_path):
    torch.manual_seed(0)
    mlm = MaskedLanguageModel(MLM)
    mlm.save_pretrained(tmp_path / "mlm")
    torch.manual_seed(1)
    fresh = SequenceClassificationTask(SEQ).model.state_dict()
    torch.manual_seed(1)
    module = SequenceClassificationTask(SEQ, init_from=str(tmp_path / "mlm"))
    assert module.hparams["init_from"] == str(tmp_path / "mlm")
    start = _fit_start_weights(module)
    source = mlm.state_dict()
    shared = [k for k in start if k.startswith(("input_adapter.", "encoder."))]
    assert shared and all(torch.equal(start[k], source[k]) for k in shared)
    decoder = [k for k in start if k.startswith("decoder.")]
    assert decoder and all(torch.equal(start[k], fresh[k]) for k in decoder)  # the classification query is new


def test_copy_matching_reports_and_unrelated_models_are_refused(tmp_path):
    target = MaskedLanguageModel(MLM)
    source = {k: torch.full_like(v, 3.0) for k, v in MaskedLanguageModel(MLM).state_dict().items()}
    source["encoder.latents"] = torch.zeros(1, 2)  # wrong shape: skipped
    report = copy_matching(target, source)
    assert "encoder.latents" in report.shape_mismatch and "encoder.latents" not in report.copied
    assert all(torch.all(target.state_dict()[k] == 3.0) for k in report.copied)
    small = EncoderConfig(num_latents=3, num_latent_channels=8, num_self_attention_heads=2)
    image = ImageClassifier(ImageClassifierConfig.tiny(encoder=small, decoder=DecoderConfig(num_query_channels=8)))
    image.save_pretrained(tmp_path / "image")
    module = SequenceClassificationTask(SEQ, init_from=str(tmp_path / "image"))
    with pytest.raises(ValueError, match="init_from=.*no weight"):
        _fit_start_weights(module)


@pytest.mark.parametrize("size", [4, 16])
def test_init_from_another_num_latents_resizes_the_latents(tmp_path, size):
    from dataclasses import replace

    from perceiverio.core.latents import resize_latent_array
    from perceiverio.training.warm_start import warm_start

    torch.manual_seed(0)
    mlm = MaskedLanguageModel(MLM)  # 8 latents
    mlm.save_pretrained(tmp_path / "mlm")
    config = replace(SEQ, encoder=replace(ENCODER, num_latents=size))
    module = SequenceClassificationTask(config, init_from=str(tmp_path / "mlm"))
    start = _fit_start_weights(module)
    source = mlm.state_dict()
    assert torch.equal(start["encoder.latents"], resize_latent_array(source["encoder.latents"], size))
    shared = [k for k in start if k.startswith(("input_adapter.", "encoder.")) and k != "encoder.latents"]
    assert shared and all(torch.equal(start[k], source[k]) for k in shared)
    report = warm_start(SequenceClassificationTask(config).model, tmp_path / "mlm")
    assert "encoder.latents" in report.copied and "encoder.latents" not in report.shape_mismatch
    how = "interpolated" if size > 8 else "neighbours averaged"
    assert report.latents_resized == (8, size) and f"latents resized from 8 to {size} ({how})" in report.summary()
    same = warm_start(SequenceClassificationTask(SEQ).model, tmp_path / "mlm")
    assert same.latents_resized is None and "resized" not in same.summary()
