"""The signed sweep manifest: --resume hands Ray Tune only files this user's distst wrote."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest

from distst.errors import DiststError
from distst.sweep import manifest


class _Payload:
    """Unpickling this would create a file: stands in for code a crafted pickle runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _sweep(tmp_path):
    sdir = tmp_path / "sweep"
    (sdir / "trial_a").mkdir(parents=True)
    (sdir / "tuner.pkl").write_bytes(pickle.dumps({"trainable": "ok"}))
    (sdir / "experiment_state-1.json").write_text(json.dumps({"trial_data": []}))
    (sdir / "sweep.yaml").write_text("sweep: {}\n")
    (sdir / "trial_a" / "params.pkl").write_bytes(pickle.dumps({"lr": 0.01}))
    (sdir / "trial_a" / "result.json").write_text("{}")
    return sdir


def test_signed_folder_verifies_and_unsigned_is_refused(tmp_path):
    sdir = _sweep(tmp_path)
    with pytest.raises(DiststError, match="no distst-manifest.json: it was not written by distst"):
        manifest.verify(sdir)
    manifest.sign(sdir)
    manifest.verify(sdir)
    assert manifest.is_current(sdir)
    # results are not guarded (Tune never unpickles them): updating one needs no re-sign
    (sdir / "trial_a" / "result.json").write_text('{"epoch": 2}')
    manifest.verify(sdir)


def test_tampered_pickle_is_rolled_back_never_loaded(tmp_path):
    sdir = _sweep(tmp_path)
    manifest.sign(sdir)
    good = (sdir / "tuner.pkl").read_bytes()
    marker = tmp_path / "code-ran"
    (sdir / "tuner.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    (sdir / "trial_a" / "evil.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    assert not manifest.is_current(sdir)
    manifest.verify(sdir)  # restores the signed copy, sets the stranger aside
    assert (sdir / "tuner.pkl").read_bytes() == good
    assert not (sdir / "trial_a" / "evil.pkl").exists()
    assert (sdir / "trial_a" / "evil.pkl.unsigned").exists()
    assert manifest.is_current(sdir) and not marker.exists()


def test_tampered_without_signed_copies_is_refused(tmp_path):
    sdir = _sweep(tmp_path)
    manifest.sign(sdir)
    for f in (sdir / manifest.SIGNED).iterdir():
        f.unlink()
    (sdir / "tuner.pkl").write_bytes(b"x")
    with pytest.raises(DiststError, match="tuner.pkl changed or appeared since distst last signed"):
        manifest.verify(sdir)


def test_forged_manifest_and_foreign_key_are_refused(tmp_path, monkeypatch):
    sdir = _sweep(tmp_path)
    manifest.sign(sdir)
    # an attacker rewrites tuner.pkl and recomputes the hashes without the key
    (sdir / "tuner.pkl").write_bytes(b"evil")
    doc = json.loads((sdir / manifest.MANIFEST).read_text())
    doc["files"]["tuner.pkl"] = hashlib.sha256(b"evil").hexdigest()
    (sdir / manifest.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(DiststError, match="was not signed with this user's key"):
        manifest.verify(sdir)
    # a sweep signed by someone else (another key) is refused as well
    other = _sweep(tmp_path / "other")
    manifest.sign(other)
    monkeypatch.setenv("DISTST_KEY_FILE", str(tmp_path / "another.key"))
    with pytest.raises(DiststError, match="not signed with this user's key"):
        manifest.verify(other)
    (other / manifest.MANIFEST).write_text("{not json")
    with pytest.raises(DiststError, match="is not a distst sweep manifest"):
        manifest.verify(other)


def test_key_file_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTST_KEY_FILE", str(tmp_path / "k" / "sweep.key"))
    manifest.sign(_sweep(tmp_path))
    assert (tmp_path / "k" / "sweep.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("key", [b"", b"k", b"\x00" * 64, b"ab" * 32])
def test_a_weak_key_is_refused_before_anything_else(tmp_path, monkeypatch, key):
    """With a degenerate key a manifest forged without any secret verified, and --resume went
    on toward unpickling the folder (issue 30): the key file is refused by name first."""
    kf = tmp_path / "weak.key"
    kf.write_bytes(key)
    kf.chmod(0o600)
    monkeypatch.setenv("DISTST_KEY_FILE", str(kf))
    sdir = _sweep(tmp_path)
    files = {n: hashlib.sha256(p.read_bytes()).hexdigest()
             for n, p in manifest.guarded_files(sdir).items()}
    (sdir / manifest.MANIFEST).write_text(json.dumps(
        {"format": manifest._FORMAT, "files": files, "hmac": manifest._mac(key, files)}))
    with pytest.raises(DiststError, match=rf"sweep key {kf} is weak \({len(key)} bytes"):
        manifest.verify(sdir)
    with pytest.raises(DiststError, match="is weak"):
        manifest.sign(sdir)


def test_a_key_others_can_read_is_refused(tmp_path, monkeypatch):
    import secrets

    kf = tmp_path / "shared.key"
    kf.write_bytes(secrets.token_bytes(32))
    kf.chmod(0o644)
    monkeypatch.setenv("DISTST_KEY_FILE", str(kf))
    with pytest.raises(DiststError, match=r"can be read or written by other users \(mode "
                                          r"0o644\).*chmod 600"):
        manifest.sign(_sweep(tmp_path))
