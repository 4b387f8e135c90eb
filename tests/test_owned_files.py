"""EmoForge never deletes or overwrites a file it did not write: exports of dataset versions and models,
and the teacher model folder (issue 14, point 2)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from core import cli, models_setup, owned_files
from core.datasets import export, versions
from core.owned_files import MANIFEST, FolderNotSafe
from core.train import registry
from tests.curate_support import add_example


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what a refused export must leave exactly as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_export(folder: Path, files: dict[str, str], *, force: bool = False) -> None:
    with owned_files.writing_into(folder, force=force) as staging:
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)


def users_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    (folder / "notes").mkdir(parents=True)
    (folder / "README.md").write_text("my own readme")
    (folder / "notes" / "todo.txt").write_text("my own notes")
    return folder


# --------------------------------------------------------------------------- the rule, on plain files


def test_a_new_folder_gets_the_files_and_a_manifest_of_them(tmp_path):
    target = tmp_path / "a" / "new"
    write_export(target, {"README.md": "card", "jsonl/train.jsonl": "{}"})
    assert snapshot(target).keys() == {"README.md", "jsonl/train.jsonl", MANIFEST}
    assert owned_files.manifest_files(target) == ["README.md", "jsonl/train.jsonl"]
    assert not list(target.glob(".emoforge-partial-*")), "the staging folder is gone"


def test_a_non_empty_folder_is_refused_without_force_and_nothing_changes(tmp_path):
    folder = users_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(FolderNotSafe, match="not empty.*--force"):
        write_export(folder, {"data.jsonl": "{}"})
    assert snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == ["README.md", "notes"]


def test_force_never_overwrites_a_file_it_did_not_write(tmp_path):
    folder = users_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(FolderNotSafe, match="README.md was not written by EmoForge"):
        write_export(folder, {"README.md": "card", "jsonl/train.jsonl": "{}"}, force=True)
    assert snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == ["README.md", "notes"]
    with pytest.raises(FolderNotSafe):  # a file where the export needs a folder is not ours either
        write_export(folder, {"notes/todo.txt/x": "1"}, force=True)
    assert snapshot(folder) == before


def test_force_writes_beside_other_files_and_replaces_only_its_own(tmp_path):
    folder = users_folder(tmp_path)
    write_export(folder, {"data/train.jsonl": "first", "data/dev.jsonl": "first", "card.md": "first"}, force=True)
    assert snapshot(folder)["notes/todo.txt"] == b"my own notes"
    write_export(folder, {"data/train.jsonl": "second", "card.md": "second"}, force=True)
    files = snapshot(folder)
    assert files["data/train.jsonl"] == b"second" and files["card.md"] == b"second"
    assert "data/dev.jsonl" not in files, "a file of the earlier export that this one does not write is removed"
    assert files["README.md"] == b"my own readme" and files["notes/todo.txt"] == b"my own notes"
    assert owned_files.manifest_files(folder) == ["card.md", "data/train.jsonl"]


def test_a_manifest_naming_paths_outside_the_folder_is_not_obeyed(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps({"written_by": "EmoForge", "files": ["../precious.txt", "/etc/hosts"]}))
    write_export(folder, {"a.txt": "a"}, force=True)
    assert outside.read_text() == "keep me"
    (folder / MANIFEST).write_text("not json")  # a file of that name that is not ours: refused, not overwritten
    with pytest.raises(FolderNotSafe, match="not a manifest EmoForge wrote"):
        write_export(folder, {"a.txt": "b"}, force=True)
    assert (folder / MANIFEST).read_text() == "not json" and (folder / "a.txt").read_text() == "a"


def test_an_export_that_fails_half_way_leaves_no_trace(tmp_path):
    target = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with owned_files.writing_into(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("disk full")
    assert not target.exists(), "a folder the export created is removed again when the export fails"
    folder = users_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(RuntimeError):
        with owned_files.writing_into(folder, force=True) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("disk full")
    assert snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == ["README.md", "notes"]


# --------------------------------------------------------------------------- dataset exports


def a_version(admin):
    for i in range(6):
        add_example(f"Export line {i}", {"joy": 0.9})
    return versions.freeze(admin, "safe export", ratios={"train": 1.0})


def test_dataset_export_refuses_a_users_folder_and_zips_only_its_own_files(admin, tmp_path):
    version = a_version(admin)
    folder = users_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(FolderNotSafe):
        export.export_version(admin, version.id, folder, ("jsonl",))
    with pytest.raises(FolderNotSafe, match="README.md"):  # the dataset card would overwrite the user's README
        export.export_version(admin, version.id, folder, ("jsonl",), force=True)
    assert snapshot(folder) == before

    (folder / "README.md").rename(folder / "README.txt")
    result = export.export_version(admin, version.id, folder, ("jsonl",), force=True)
    assert Path(result.zip_path).parent == folder, "the zip lies inside the export folder, not beside it"
    with zipfile.ZipFile(result.zip_path) as archive:
        assert sorted(archive.namelist()) == ["README.md", "jsonl/train.jsonl"], "none of the user's files"
    assert (folder / "README.txt").read_text() == "my own readme" and (folder / "notes" / "todo.txt").exists()
    again = export.export_version(admin, version.id, folder, ("csv",), force=True)  # replaces its own files only
    assert (folder / "csv" / "train.csv").exists() and not (folder / "jsonl").exists()
    assert again.files == {"csv": ["csv/train.csv"]} and (folder / "README.txt").exists()


def test_cli_export_into_the_current_folder_needs_force_and_keeps_its_files(admin, tmp_path, monkeypatch, capsys):
    version = a_version(admin)
    folder = users_folder(tmp_path)
    before = snapshot(folder)
    monkeypatch.setenv("EMOFORGE_PASSWORD", "admin-pass-123")
    monkeypatch.chdir(folder)
    assert cli.main(["--user", "admin", "export", str(version.id), "--out", ".", "--formats", "jsonl"]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["--user", "admin", "export", str(version.id), "--out", ".", "--force"]) == 2
    assert "README.md was not written by EmoForge" in capsys.readouterr().err
    assert snapshot(folder) == before
    assert cli.main(["--user", "admin", "export", str(version.id), "--out", "fresh", "--zip"]) == 0
    assert (folder / "fresh" / "fresh.zip").is_file() and snapshot(folder)["README.md"] == b"my own readme"


# --------------------------------------------------------------------------- model exports


def a_model(admin, tmp_path) -> int:
    source = tmp_path / "model-files"
    source.mkdir()
    (source / "config.json").write_text("{}")
    (source / "checkpoint.pt").write_text("not exported")
    return registry.register_model(admin, "classifier", "safe model", source, ["joy"], {"global": 0.5})


def test_export_model_never_deletes_an_existing_folder(admin, tmp_path, monkeypatch, capsys):
    model_id = a_model(admin, tmp_path)
    folder = users_folder(tmp_path)
    before = snapshot(folder)
    monkeypatch.setenv("EMOFORGE_PASSWORD", "admin-pass-123")
    monkeypatch.chdir(folder)
    assert cli.main(["--user", "admin", "export-model", str(model_id), "--out", "."]) == 2  # used to wipe the cwd
    assert cli.main(["--user", "admin", "export-model", str(model_id), "--out", ".", "--force"]) == 2
    assert "README.md was not written by EmoForge" in capsys.readouterr().err
    assert snapshot(folder) == before

    assert cli.main(["--user", "admin", "export-model", str(model_id), "--out", "model"]) == 0
    (folder / "model" / "my-eval.txt").write_text("mine")
    assert cli.main(["--user", "admin", "export-model", str(model_id), "--out", "model"]) == 2
    assert cli.main(["--user", "admin", "export-model", str(model_id), "--out", "model", "--force"]) == 0
    exported = snapshot(folder / "model")
    assert exported.keys() == {"config.json", registry.CARD_FILE, "README.md", MANIFEST, "my-eval.txt"}
    assert exported["my-eval.txt"] == b"mine"
    with pytest.raises(ValueError, match="outside its own files"):
        registry.export_model(admin, model_id, tmp_path / "model-files" / "inside")
    name, data = registry.export_zip(admin, model_id)  # the page's download: its own folder under EMOFORGE_HOME
    assert name.endswith(".zip") and "safe-model" in name
    registry.export_zip(admin, model_id)  # again: replaces its own files


# --------------------------------------------------------------------------- the teacher folder


def test_a_teacher_folder_emoforge_did_not_make_is_never_deleted(tmp_path):
    folder = users_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(models_setup.TeacherFolderNotOurs, match="EmoForge did not create it"):
        models_setup.ensure_teacher(folder)  # refused before any conversion starts
    assert snapshot(folder) == before
    half = tmp_path / "half-model"
    half.mkdir()
    (half / "config.json").write_text("{}")  # a model folder missing its weights: still not ours to delete
    with pytest.raises(models_setup.TeacherFolderNotOurs):
        models_setup.clear_stale(half)
    assert (half / "config.json").exists()


def test_a_teacher_folder_emoforge_made_is_replaced(tmp_path):
    ours = tmp_path / "converted"
    ours.mkdir()
    (ours / models_setup.CONVERTED_MARKER).write_text("")
    (ours / "config.json").write_text("{}")  # an interrupted or damaged conversion of ours
    models_setup.clear_stale(ours)
    assert not ours.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    models_setup.clear_stale(empty)
    assert not empty.exists()
