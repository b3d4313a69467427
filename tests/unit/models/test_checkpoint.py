"""Checkpoints: round trip, corrupt and foreign files, published weight files, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from layerprune.models import get_model, load_checkpoint, save_checkpoint
from layerprune.models.checkpoint import (
    CorruptCheckpointError,
    NotACheckpointError,
    load_external_weights,
    tensor_digest,
)

PREPROCESSING = {
    "dataset": "cifar10",
    "mean": (0.4914, 0.4822, 0.4465),  # tuples come back as lists (weights_only loading)
    "std": [0.247, 0.2435, 0.2616],
    "input_size": [3, 32, 32],
    "num_classes": 10,
}


def _trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random batch-norm statistics, so that a checkpoint that lost its buffers would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
    return model.eval()


def _outputs(model: nn.Module, channels: int = 3, side: int = 32) -> torch.Tensor:
    x = torch.randn(3, channels, side, side, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("name, blocks", [("resnet20", [3, 1, 2]), ("resnet18", [1, 2, 1, 1])])
def test_save_load_round_trip(tmp_path: Path, name: str, blocks: list[int]) -> None:
    model = _trained_looking(get_model(name, num_classes=10, blocks_per_stage=blocks))
    meta = {"stage": "prune", "seed": np.int64(3), "removed": ("layer1.1",), "source": tmp_path / "x.th"}
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, preprocessing=PREPROCESSING, meta=meta)
    assert path == tmp_path / "sub" / "model.pt"

    ckpt = load_checkpoint(path)
    assert ckpt.spec == model.spec()
    assert ckpt.model.spec() == model.spec()
    assert ckpt.preprocessing == {**PREPROCESSING, "mean": list(PREPROCESSING["mean"])}
    assert ckpt.meta == {"stage": "prune", "seed": 3, "removed": ["layer1.1"], "source": str(tmp_path / "x.th")}
    assert not ckpt.model.training
    torch.testing.assert_close(_outputs(ckpt.model), _outputs(model), rtol=0, atol=0)
    for key, value in model.state_dict().items():  # buffers too
        torch.testing.assert_close(ckpt.model.state_dict()[key], value, rtol=0, atol=0)


def test_save_needs_the_preprocessing_that_says_how_to_feed_the_model(tmp_path: Path) -> None:
    model = get_model("resnet20", num_classes=10)
    with pytest.raises(ValueError, match=r"lacks \['std', 'input_size'\]"):
        save_checkpoint(tmp_path / "m.pt", model, preprocessing={"mean": [0.5], "num_classes": 10})
    assert list(tmp_path.iterdir()) == []


def test_truncated_checkpoint_says_so_and_how_to_recover(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "model.pt", get_model("resnet20", num_classes=10), preprocessing=PREPROCESSING)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot be read") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "truncated" in str(err.value) and "rerun" in str(err.value)
    assert "delete" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("config.yaml", b"experiment: quick\nseeds: [0]\n", "it is YAML, starting 'experiment: quick'"),
        ("notes", b"this is not a torch file\n" * 10, "it is text"),
        ("model.pt", b"", "it is empty"),
        ("blob.bin", b"\x00\x01\xff\xfe" * 8, "binary data"),
    ],
)
def test_a_non_checkpoint_says_what_it_is_not_and_advises_no_deletion(
    tmp_path: Path, name: str, content: bytes, what: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NotACheckpointError, match="is not a checkpoint") as err:
        load_checkpoint(path)
    assert what in str(err.value) and "delete" not in str(err.value)
    assert path.read_bytes() == content


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_plain_state_dict_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(get_model("resnet20", num_classes=10).state_dict(), path)
    with pytest.raises(NotACheckpointError, match="model.checkpoint"):
        load_checkpoint(path)


def test_newer_checkpoint_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "model.pt", get_model("resnet20", num_classes=10), preprocessing=PREPROCESSING)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(ValueError, match="version 99.*upgrade"):
        load_checkpoint(path)


@pytest.mark.parametrize("key", ["spec", "state_dict", "preprocessing"])
def test_checkpoint_lacking_an_entry_names_it(tmp_path: Path, key: str) -> None:
    path = save_checkpoint(tmp_path / "model.pt", get_model("resnet20", num_classes=10), preprocessing=PREPROCESSING)
    payload = torch.load(path, weights_only=True)
    del payload[key]
    torch.save(payload, path)
    with pytest.raises(ValueError, match=rf"lacks \['{key}'\].*written by a layerprune stage"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_spec_are_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "model.pt", get_model("resnet20", num_classes=10), preprocessing=PREPROCESSING)
    payload = torch.load(path, weights_only=True)
    payload["spec"]["blocks_per_stage"] = [3, 3, 2]
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"do not fit.*unexpected \['layer3\.2"):
        load_checkpoint(path)


def _published_style(model: nn.Module) -> dict:
    """akamaster/pytorch_resnet_cifar10's format: DataParallel keys, no BN batch counters."""
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    return {"state_dict": state, "best_prec1": 91.7}


def test_load_external_weights_strips_module_prefix(tmp_path: Path) -> None:
    source = _trained_looking(get_model("resnet20", num_classes=10))
    path = tmp_path / "resnet20-abc.th"
    torch.save(_published_style(source), path)
    target = get_model("resnet20", num_classes=10)
    assert load_external_weights(target, path) is target
    torch.testing.assert_close(_outputs(target), _outputs(source), rtol=0, atol=0)


def test_load_external_weights_accepts_plain_state_dicts_and_own_checkpoints(tmp_path: Path) -> None:
    source = _trained_looking(get_model("resnet18", num_classes=10, blocks_per_stage=[1, 1, 1, 1]))
    plain = tmp_path / "plain.pth"
    torch.save(source.state_dict(), plain)
    own = save_checkpoint(tmp_path / "own.pt", source, preprocessing={**PREPROCESSING, "input_size": [3, 64, 64]})
    for path in (plain, own):
        target = get_model("resnet18", num_classes=10, blocks_per_stage=[1, 1, 1, 1])
        load_external_weights(target, path)
        torch.testing.assert_close(_outputs(target, side=64), _outputs(source, side=64), rtol=0, atol=0)


@pytest.mark.parametrize(
    "source, target, message",
    [
        ("resnet32", "resnet20", r"unexpected \['layer1\.3\.conv1\.weight"),
        ("resnet20", "resnet32", r"missing \['layer1\.3\.conv1\.weight"),
    ],
)
def test_load_external_weights_rejects_another_architecture(
    tmp_path: Path, source: str, target: str, message: str
) -> None:
    path = tmp_path / "w.th"
    torch.save(_published_style(get_model(source, num_classes=10)), path)
    model = get_model(target, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        load_external_weights(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_load_external_weights_names_wrong_shapes(tmp_path: Path) -> None:
    path = tmp_path / "w.th"
    torch.save(_published_style(get_model("resnet20", num_classes=100)), path)
    with pytest.raises(ValueError, match=r"wrong shapes \['linear\.weight: file \(100, 64\) vs model \(10, 64\)"):
        load_external_weights(get_model("resnet20", num_classes=10), path)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = get_model("resnet20", num_classes=10)
    path = save_checkpoint(tmp_path / "model.pt", model, preprocessing=PREPROCESSING)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp file left
    good = path.read_bytes()

    def failing_save(obj: object, f: str | Path) -> None:  # a write that dies half way (disk full)
        Path(f).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path / "new.pt", model, preprocessing=PREPROCESSING)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, model, preprocessing=PREPROCESSING)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no partial target, no temp file
    assert path.read_bytes() == good  # the previous checkpoint survives a failed overwrite


def _flip_tensor_bytes(path: Path, count: int = 4096) -> None:
    """Inverts ``count`` bytes inside the largest tensor's storage record of a saved checkpoint: the zip
    still opens and unpickles (as after a bad disk or a damaged copy), only the weights change."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        header = len(info.FileHeader()) + len(info.extra)  # local header as written, then the stored bytes
    data = bytearray(path.read_bytes())
    start = info.header_offset + header + 64
    data[start : start + count] = bytes(255 - b for b in data[start : start + count])
    path.write_bytes(bytes(data))


def test_flipped_weight_bytes_are_detected_and_name_the_file(tmp_path: Path) -> None:
    model = _trained_looking(get_model("resnet20", num_classes=10))
    path = save_checkpoint(tmp_path / "model.pt", model, preprocessing=PREPROCESSING, meta={"stage": "pruned"})
    _flip_tensor_bytes(path)
    payload = torch.load(path, weights_only=True)  # still a readable torch file, with other weights
    assert any(not torch.equal(payload["state_dict"][k], v) for k, v in model.state_dict().items())
    with pytest.raises(CorruptCheckpointError, match="corrupt") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "rule prune_model" in str(err.value)


def test_checkpoint_without_a_digest_loads_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = _trained_looking(get_model("resnet20", num_classes=10))
    path = save_checkpoint(tmp_path / "model.pt", model, preprocessing=PREPROCESSING)
    payload = torch.load(path, weights_only=True)
    del payload["sha256"]  # as written before digests were recorded
    torch.save(payload, path)
    with caplog.at_level("WARNING"):
        ckpt = load_checkpoint(path)
    torch.testing.assert_close(_outputs(ckpt.model), _outputs(model), rtol=0, atol=0)
    assert "no tensor digest" in caplog.text and str(path) in caplog.text


def test_digest_covers_names_dtypes_shapes_and_values() -> None:
    state = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor(3)}
    base = tensor_digest(state)
    assert tensor_digest(dict(reversed(state.items()))) == base  # order of the dict does not matter
    variants = [
        {**state, "a": state["a"].reshape(3, 2)},
        {**state, "a": state["a"].double()},
        {"c": state["a"], "b": state["b"]},
        {**state, "b": torch.tensor(4)},
    ]
    assert len({base, *(tensor_digest(v) for v in variants)}) == 5


class _Payload:
    """An arbitrary object; unpickling it would run ``os.system``."""

    def __reduce__(self) -> tuple:
        import os

        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("wrap", [False, True])
def test_loaders_refuse_a_file_holding_an_arbitrary_pickled_object(tmp_path: Path, wrap: bool) -> None:
    from layerprune.train.state import load_state

    path = tmp_path / "evil.pt"
    obj = _Payload()
    torch.save({"format": "layerprune-checkpoint", "version": 1, "state_dict": obj} if wrap else obj, path)
    for load in (load_checkpoint, lambda p: load_external_weights(get_model("resnet20", num_classes=10), p)):
        with pytest.raises(ValueError, match="corrupt or not a torch file|cannot be read") as err:
            load(path)
        assert str(path) in str(err.value)
        assert "Unsupported global" in str(err.value) or "weights_only" in str(err.value).lower()
    with pytest.raises(RuntimeError, match="cannot read training checkpoint") as err:
        load_state(path)
    assert "Unsupported global" in str(err.value) or "weights_only" in str(err.value).lower()
