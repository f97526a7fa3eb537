"""MLM text sources: unlabelled sentences of a labelled TSV file, alone or with the embedded prose added."""

from __future__ import annotations

from pydoc_data.topics import topics

import pytest

from perceiverio.data import TextDataModule


def test_tsv_sentences_without_labels_plus_embedded_prose(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    tsv = tmp_path / "train.tsv"
    rows = [f"a quietly moving film number {i} \t{i % 2}" for i in range(300)]
    tsv.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    topic = sorted(topics.values(), key=len)[-1][:60]  # a piece of the longest embedded topic

    alone = TextDataModule(dataset=str(tsv), text_column="sentence", seq_len=64, batch_size=4)
    alone.setup()
    both = TextDataModule(dataset=str(tsv), text_column="sentence", seq_len=64, batch_size=4, add_embedded=True)
    both.setup()

    for dm in (alone, both):
        text = dm.train_text + dm.val_text
        assert text.count("a quietly moving film number") == 300  # every sentence, each once
        assert " \t" not in text and "sentence\tlabel" not in text  # only the text column: no labels leak in
    assert topic not in alone.train_text + alone.val_text
    assert topic in both.train_text + both.val_text
    assert len(both.train_text) > len(alone.train_text) + 300_000  # the ~465k characters of prose, mostly training
    assert "a quietly moving film number" in both.val_text  # both sources keep a validation share


def test_a_text_too_small_to_split_names_the_path(tmp_path):
    import pytest

    from perceiverio.data import TextDataModule

    (tmp_path / "tiny.txt").write_text("x")
    with pytest.raises(ValueError, match=r"^path '.*tiny.txt': the text is too small to split"):
        TextDataModule(path=str(tmp_path / "tiny.txt"), seq_len=8).setup("fit")
