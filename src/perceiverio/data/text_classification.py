"""Text classification data: labelled tables (TSV/CSV/JSONL) or Hugging Face datasets, as byte ids.

Batches are ``{"input_ids": [B, L] long, "attention_mask": [B, L] long (1 = byte, 0 = padding), "labels": [B]
long}`` with the official byte ids of :class:`~perceiverio.tokenizer.ByteTokenizer` (byte b -> b + 6, PAD 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from ..tokenizer import ByteTokenizer
from .labels import LabelEncoder, Labels, check_classes_option, model_classes
from .predict import TEXT_EXPECTED, PredictTexts, check_predict_path, collate_texts, missing_predict_path, text_lines
from .readers.text import check_columns, find_split_file, load_hf_dataset, read_table
from .sampling import ListDataset, check_count, check_paths, check_source, loader, pad_collate

Rows = list[dict[str, Any]]


class TextClassificationDataModule(L.LightningDataModule):
    """Text classification from tables or Hugging Face datasets, with training, validation and test splits.

    ``path``: a folder with ``{train_split or train}.{tsv,csv,jsonl,json}`` and ``{val_split, val, validation or
    dev}.{...}`` (without a validation file, or for a single file: a seeded 90/10 split). TSV files have a header
    line and no quoting (the GLUE layout), CSV files standard quoting, JSONL one object per line. ``dataset``: a
    Hugging Face dataset (name, local folder or data file) with splits ``train_split`` and ``val_split``.

    ``test_path``: the test set, a table file with the same columns, or the name of a split: a file
    ``{test_path}.{tsv,...}`` in the ``path`` folder (``"glue_dev"`` for ``../shared/data/sst2/glue_dev.tsv``) or a
    split of ``dataset``. Without it ``test`` has no data and says so.

    ``classes``: the classes the labels must be, a number K (labels are ids 0..K-1) or the list of class names (a
    label is a name or its id). Labels are checked in ``setup`` against ``classes``, else the model's
    ``num_classes`` when a trainer runs the module, else the classes the training and validation labels imply (int
    ids as they are, other labels as strings in sorted order; :class:`~perceiverio.data.labels.LabelEncoder`): a
    label that is none of them raises a ValueError naming the file, the line and the value. Batches:
    ``input_ids``/``attention_mask`` ``[B, L]`` long, padded per batch, truncated to ``max_length`` bytes (no
    special tokens, like the official tokenizer); ``labels`` ``[B]`` long. ``predict_path``: text to classify, a
    ``.txt``/``.md`` file or a folder of them, one example per non-empty line (``perceiverio predict``).
    """

    def __init__(
        self,
        path: str | None = None,
        dataset: str | None = None,
        dataset_config: str | None = None,
        train_split: str = "train",
        val_split: str = "validation",
        text_column: str = "sentence",
        label_column: str = "label",
        max_length: int = 256,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        test_path: str | None = None,
        classes: int | list[str] | None = None,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        check_paths(path=path, test_path=test_path)
        check_source(path, dataset)
        if path is None and dataset is None:
            raise ValueError(
                "TextClassificationDataModule needs path (a folder or a .tsv/.csv/.jsonl file) or "
                "dataset (a Hugging Face dataset)"
            )
        check_count(max_length=max_length, batch_size=batch_size)
        check_count(0, num_workers=num_workers)
        predict_path = check_predict_path(predict_path, TEXT_EXPECTED)
        self.save_hyperparameters()
        self.path, self.dataset, self.dataset_config = path, dataset, dataset_config
        self.train_split, self.val_split = train_split, val_split
        self.text_column, self.label_column = text_column, label_column
        self.max_length, self.batch_size, self.num_workers, self.seed = max_length, batch_size, num_workers, seed
        self.test_path, self.predict_path = test_path, predict_path
        self.classes = check_classes_option(classes)
        self._expected: int | list[str] | None = None  # the classes the labels were checked against in setup
        if test_path is not None and path is not None:
            self._test_file()  # fails early when test_path names nothing
        self._train: list[dict[str, torch.Tensor]] | None = None
        self._val: list[dict[str, torch.Tensor]] = []
        self._test: list[dict[str, torch.Tensor]] | None = None
        self._label_names: list[str] = []
        self._num_classes = 0

    @property
    def source(self) -> str:
        """The data's origin, as error messages name it."""
        return repr(self.path) if self.path is not None else f"dataset {self.dataset!r}"

    # ---------------------------------------------------------------- sources
    def _test_file(self) -> Path:
        """``test_path`` as a file: itself, or ``{test_path}.{tsv,csv,jsonl,json}`` in the ``path`` folder."""
        p = Path(self.test_path).expanduser()
        if p.is_file():
            return p
        folder = Path(self.path).expanduser()
        found = find_split_file(folder, [self.test_path]) if folder.is_dir() else None
        if found is None:
            where = f" nor a split file {self.test_path}.tsv/.csv/.jsonl/.json in {self.path!r}"
            where = where if folder.is_dir() else ""
            raise ValueError(f"test_path {self.test_path!r} is not a table file{where}")
        return found

    def _rows_from_path(self) -> tuple[Rows, Rows | None, str, str]:
        p = Path(self.path).expanduser()
        if p.is_dir():
            train_file = find_split_file(p, [self.train_split, "train"])
            if train_file is None:
                raise ValueError(f"data folder {self.path!r} has no {self.train_split}.tsv/.csv/.jsonl file")
            val_file = find_split_file(p, [self.val_split, "val", "validation", "dev"])
            train = read_table(train_file)
            val = read_table(val_file) if val_file is not None else None
            return train, val, str(train_file), str(val_file)
        return read_table(p), None, str(p), str(p)

    def _dataset_rows(self, dd: Any, split: str) -> Rows:
        if split not in dd:
            raise ValueError(f"dataset {self.dataset!r} has no split {split!r}; splits found: {', '.join(dd.keys())}")
        ds = dd[split]
        for c in (self.text_column, self.label_column):
            if c not in ds.column_names:
                raise ValueError(
                    f"dataset {self.dataset!r} split {split!r} has no column {c!r}; columns "
                    f"found: {', '.join(ds.column_names)}"
                )
        texts, labels = ds[self.text_column], ds[self.label_column]
        return [{self.text_column: t, self.label_column: y} for t, y in zip(texts, labels)]

    def _rows_from_dataset(self) -> tuple[Rows, Rows, str, str, list[str] | None, tuple[Rows, str] | None]:
        dd = load_hf_dataset(self.dataset, self.dataset_config)
        train, val = (self._dataset_rows(dd, s) for s in (self.train_split, self.val_split))
        feature = dd[self.train_split].features.get(self.label_column)
        names = list(feature.names) if hasattr(feature, "names") else None
        test = None
        if self.test_path is not None and self.test_path in dd:
            test = self._dataset_rows(dd, self.test_path), f"dataset {self.dataset!r} split {self.test_path!r}"
        elif self.test_path is not None and not Path(self.test_path).expanduser().is_file():
            raise ValueError(
                f"test_path {self.test_path!r} is neither a split of dataset {self.dataset!r} "
                f"({', '.join(dd.keys())}) nor a table file"
            )
        src = f"dataset {self.dataset!r} split "
        return train, val, src + repr(self.train_split), src + repr(self.val_split), names, test

    def _classes(self) -> tuple[int | list[str] | None, str]:
        """The classes to check the labels against, and where they come from (for messages)."""
        if self.classes is not None:
            return self.classes, f"data classes={self.classes if isinstance(self.classes, int) else self.classes[:10]}"
        k = model_classes(self)
        return k, (f"the model predicts {k} classes: num_classes={k}" if k is not None else "")

    def setup(self, stage: str | None = None) -> None:
        expected, origin = self._classes()
        if self._train is not None and expected in (None, self._expected, self._num_classes):
            return  # checked against these classes already (or inferred as many)
        names, test = None, None
        if self.path is not None:
            train, val, train_src, val_src = self._rows_from_path()
        else:
            train, val, train_src, val_src, names, test = self._rows_from_dataset()
        if self.test_path is not None and test is None:
            test_file = self._test_file()
            test = read_table(test_file), str(test_file)
        columns = (self.text_column, self.label_column)
        check_columns(train, columns, train_src)
        for rows, src in ((val, val_src), test or (None, "")):
            if rows is not None:
                check_columns(rows, columns, src)
        train_labels = self._labels(train, train_src)
        val_labels = self._labels(val, val_src) if val is not None else None
        labels = LabelEncoder([train_labels, *([val_labels] if val_labels else [])], names, expected, origin)
        train_y = labels.encode(train_labels)
        if val is None:
            if len(train) < 2:
                raise ValueError(f"{train_src} has {len(train)} rows; need at least 2 to split off validation")
            order = np.random.default_rng(self.seed).permutation(len(train))
            n_val = max(1, len(train) // 10)
            val_idx, train_idx = order[:n_val], np.sort(order[n_val:])
            val, val_y = [train[i] for i in val_idx], [train_y[i] for i in val_idx]
            train, train_y = [train[i] for i in train_idx], [train_y[i] for i in train_idx]
        else:
            val_y = labels.encode(val_labels)
        test_y = labels.encode(self._labels(*test)) if test is not None else None
        self._label_names, self._num_classes, self._expected = labels.names, labels.num_classes, expected
        self._train, self._val = self._encode(train, train_y, train_src), self._encode(val, val_y, val_src)
        if test is not None:
            self._test = self._encode(test[0], test_y, test[1])

    def _labels(self, rows: Rows, source: str) -> Labels:
        """The label column of ``rows``, with the table file they come from (for line numbers in messages)."""
        path = Path(source) if Path(source).is_file() else None
        return Labels([r[self.label_column] for r in rows], source, path)

    def _encode(self, rows: Rows, ys: list[int], src: str) -> list[dict[str, torch.Tensor]]:
        tok, items = ByteTokenizer(), []
        for i, (r, y) in enumerate(zip(rows, ys)):
            text = r[self.text_column]
            if not isinstance(text, str):
                raise ValueError(
                    f"{src} row {i + 1}: column {self.text_column!r} holds {type(text).__name__}, not text"
                )
            ids = tok.encode(text or " ")[: self.max_length]  # an empty text reads as one space
            items.append(
                {
                    "input_ids": torch.tensor(ids, dtype=torch.long),
                    "attention_mask": torch.ones(len(ids), dtype=torch.long),
                    "labels": torch.tensor(y, dtype=torch.long),
                }
            )
        return items

    @property
    def num_classes(self) -> int:
        self.setup()
        return self._num_classes

    @property
    def label_names(self) -> list[str]:
        self.setup()
        return list(self._label_names)

    def train_dataloader(self):
        self.setup()
        return loader(
            ListDataset(self._train), self.batch_size, self.num_workers, pad_collate, shuffle=True, seed=self.seed
        )

    def val_dataloader(self):
        self.setup()
        return loader(ListDataset(self._val), self.batch_size, self.num_workers, pad_collate)

    def test_dataloader(self):
        """Test batches in order, from ``test_path``; a ValueError when it is not set."""
        self.setup()
        if self._test is None:
            raise ValueError(
                f"text classification data {self.source} has no test set: give test_path (a table file, or a split "
                "name such as glue_dev for glue_dev.tsv in the data folder)"
            )
        return loader(ListDataset(self._test), self.batch_size, self.num_workers, pad_collate)

    def predict_dataloader(self):
        """The lines of ``predict_path`` (one example per non-empty line, cut to ``max_length`` bytes); a ValueError
        when it is not set."""
        if self.predict_path is None:
            raise missing_predict_path("TextClassificationDataModule", TEXT_EXPECTED)
        dataset = PredictTexts(text_lines(self.predict_path), self.max_length)
        return loader(dataset, self.batch_size, self.num_workers, collate_texts)
