"""ChestX-ray14 in its published layout: reading, the patient-wise split, the decoded cache,
and bad input named."""
import os

import numpy as np
import pytest

from minicnn.data import cache as cache_module
from minicnn.data.chestxray14 import FINDINGS, open_chestxray14, pick_findings
from minicnn.data.chestxray14_layout import write_chestxray14
from minicnn.errors import UserError


@pytest.fixture
def layout(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICNN_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cxr14"
    entries = write_chestxray14(root, patients=30, images_per_patient=3, size=40, seed=1)
    return root, entries


def _splits_csv(path):
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    return {image: (patient, split) for image, patient, split in rows}


def test_official_test_list_and_patient_disjoint_val_carved_from_train_val(layout, tmp_path):
    root, entries = layout
    out, info = open_chestxray14(root, 24, val_fraction=0.2, seed=3, log=lambda *a: None,
                                 splits_csv=tmp_path / "splits.csv")
    split = _splits_csv(tmp_path / "splits.csv")
    assert len(split) == len(entries)
    test_list = (root / "test_list.txt").read_text().split()
    assert sorted(i for i, (_, s) in split.items() if s == "test") == sorted(test_list)
    patients = {s: {p for p, t in split.values() if t == s} for s in ("train", "val", "test")}
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    n_train_val = len(entries) - len(test_list)
    assert 0.2 * n_train_val <= len(out["val"]) < 0.2 * n_train_val + 3
    assert {k: len(v) for k, v in out.items()} == {
        s: sum(1 for _, t in split.values() if t == s) for s in ("train", "val", "test")}
    assert out["train"].classes == FINDINGS and info["multilabel"]


def test_labels_are_the_csv_findings_multi_hot(layout):
    root, entries = layout
    out, _ = open_chestxray14(root, 24, labels="Effusion,mass", log=lambda *a: None)
    truth = {image: found for image, _, found in entries}
    ds = out["test"]
    images, labels = ds.get_batch(np.arange(len(ds)))
    assert images.shape == (len(ds), 1, 24, 24) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    for path, row in zip(ds.files, labels):
        found = truth[os.path.basename(path)]
        assert row.tolist() == [float("Effusion" in found), float("Mass" in found)]


def test_the_cache_is_reused_resumed_and_invalidated(layout, monkeypatch):
    root, _ = layout
    calls = []
    real = cache_module.decode_one

    def counting(path, size, channels):
        calls.append(path)
        if len(calls) == 25 and not getattr(counting, "failed", False):
            counting.failed = True
            raise RuntimeError("simulated interruption")
        return real(path, size, channels)

    monkeypatch.setattr(cache_module, "decode_one", counting)
    with pytest.raises(UserError, match="simulated interruption"):
        open_chestxray14(root, 24, log=lambda *a: None)
    assert len(calls) == 25
    first, _ = open_chestxray14(root, 24, log=lambda *a: None)
    assert len(calls) == 25 + 90 - 24, "resumed: the 24 decoded images are not decoded again"
    open_chestxray14(root, 24, log=lambda *a: None)
    assert len(calls) == 25 + 90 - 24, "reused"
    one = next((root / "images_001" / "images").iterdir())
    os.utime(one, ns=(1, 1))
    open_chestxray14(root, 24, log=lambda *a: None)
    assert len(calls) == 25 + 90 - 24 + 90, "a changed file makes a new cache"
    direct = real(first["train"].files[0], 24, 1)
    np.testing.assert_array_equal(first["train"].cache.array[first["train"].rows[0]], direct)


def _rewrite_csv(root, change):
    path = root / "Data_Entry_2017_v2020.csv"
    lines = path.read_text().splitlines()
    new = change(lines)
    assert new != lines, "the change must change the file"
    path.write_text("\n".join(new) + "\n")


def _relabel_first(lines, label):
    fields = lines[1].split(",")
    fields[1] = label
    return [lines[0], ",".join(fields)] + lines[2:]


MISSING = ["00000999_%03d.png,No Finding,0,999,40,M,PA,40,40,0.1,0.1" % k for k in range(4)]


@pytest.mark.parametrize("change, words", [
    (lambda ls: [ls[0].replace("Patient ID", "Patient")] + ls[1:],
     "missing the column(s) Patient ID"),
    (lambda ls: _relabel_first(ls, "Pnemonia"), "'Pnemonia' is not one of the 14 findings"),
    (lambda ls: _relabel_first(ls, "Effusion|Pnemonia"), "did you mean Pneumonia"),
    (lambda ls: ls + MISSING, "4 image(s) listed in Data_Entry_2017_v2020.csv are not under "
                              "images/ or images_NNN/images/, e.g. 00000999_000.png"),
])
def test_bad_entry_files_are_named(layout, change, words):
    root, _ = layout
    _rewrite_csv(root, change)
    with pytest.raises(UserError) as err:
        open_chestxray14(root, 24, log=lambda *a: None)
    assert words in str(err.value)
    assert "Data_Entry_2017_v2020.csv" in str(err.value)


def test_a_patient_or_image_in_both_official_lists_is_refused(layout):
    root, entries = layout
    test_list = (root / "test_list.txt").read_text().split()
    train_val = (root / "train_val_list.txt").read_text().split()
    patient_of = {image: p for image, p, _ in entries}
    moved = next(i for i in train_val if patient_of[i] != patient_of[test_list[0]])
    sibling = next(i for i in train_val if patient_of[i] == patient_of[moved] and i != moved)
    (root / "test_list.txt").write_text("\n".join(test_list + [moved]) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(i for i in train_val if i != moved) + "\n")
    with pytest.raises(UserError, match=f"patient.*both.*patient {patient_of[sibling]}"):
        open_chestxray14(root, 24, log=lambda *a: None)
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    with pytest.raises(UserError, match=f"both official lists, e.g. {moved}"):
        open_chestxray14(root, 24, log=lambda *a: None)


def test_unknown_findings_in_labels_name_the_closest():
    with pytest.raises(UserError, match="did you mean Effusion"):
        pick_findings("Efusion")
    with pytest.raises(UserError, match="Pleural_Thickening"):
        pick_findings("pleural thickenin")
    assert pick_findings("pneumonia, Pleural thickening") == ("Pneumonia", "Pleural_Thickening")
