"""The approval's artifact digest: what it covers, and that it is the documented formula."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mlops_platform import registry as reg


def model_dir(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "model.pkl").write_bytes(b"\x80\x04weights" * 100)
    (root / "sub" / "extra.txt").write_text("x")
    return root


def test_digest_is_the_documented_formula(tmp_path: Path) -> None:
    root = model_dir(tmp_path / "m")
    entries = sorted(
        [
            p.relative_to(root).as_posix(),
            p.stat().st_size,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        ]
        for p in root.rglob("*")
        if p.is_file()
    )
    wanted = hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()
    result = reg.digest_tree(root)
    assert result.digest == "sha256:" + wanted
    assert set(result.files) == {"MLmodel", "model.pkl", "sub/extra.txt"}
    assert result.size_bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    # the same files elsewhere give the same digest: only relative paths count
    assert reg.digest_tree(model_dir(tmp_path / "copy")).digest == result.digest


@pytest.mark.parametrize(
    "change",
    [
        "flip a byte, same size",
        "rename a file",
        "add an empty file",
        "remove a file",
        "move a file to a folder",
    ],
)
def test_any_change_to_the_files_changes_the_digest(tmp_path: Path, change: str) -> None:
    root = model_dir(tmp_path / "m")
    before = reg.digest_tree(root)
    pkl = root / "model.pkl"
    if change == "flip a byte, same size":
        data = bytearray(pkl.read_bytes())
        data[7] ^= 0x01
        pkl.write_bytes(bytes(data))
    elif change == "rename a file":
        pkl.rename(root / "model2.pkl")
    elif change == "add an empty file":
        (root / "sub" / "empty").write_bytes(b"")
    elif change == "remove a file":
        (root / "sub" / "extra.txt").unlink()
    else:
        pkl.rename(root / "sub" / "model.pkl")
    after = reg.digest_tree(root)
    assert after.digest != before.digest
    assert after.changes_since(before.files_tag()) != f"now {after.summary()}"


def test_changes_since_names_the_files(tmp_path: Path) -> None:
    root = model_dir(tmp_path / "m")
    approved = reg.digest_tree(root).files_tag()
    (root / "model.pkl").write_bytes(b"other")
    (root / "new.bin").write_bytes(b"1")
    (root / "sub" / "extra.txt").unlink()
    now = reg.digest_tree(root)
    assert now.changes_since(approved) == (
        "changed: model.pkl; added: new.bin; removed: sub/extra.txt"
    )
    # without the list (too long to store, or an old tag) it says what is there now
    assert now.changes_since(None) == f"now {now.summary()}"
    assert now.changes_since("not json") == f"now {now.summary()}"


def test_files_tag_is_left_out_when_too_long(tmp_path: Path) -> None:
    root = tmp_path / "many"
    root.mkdir()
    for i in range(200):
        (root / f"shard-{i:04d}.bin").write_bytes(bytes([i % 256]))
    result = reg.digest_tree(root)
    assert result.files_tag() is None and len(result.files) == 200
