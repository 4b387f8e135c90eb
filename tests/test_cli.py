"""The CLI runs the same core functions, under the acting user's role."""

from __future__ import annotations

from core import cli, corpus


def test_import_now_and_as_a_job_then_list_jobs(admin, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMOFORGE_PASSWORD", "admin-pass-123")
    story = tmp_path / "fox.txt"
    story.write_text("The Fox\n\nA fox found a bell in the snow and rang it all winter.\n")
    assert cli.main(["--user", "admin", "import", str(story), "--corpus", "CLI"]) == 0
    assert "1 story added, 0 duplicates skipped, 1 passage" in capsys.readouterr().out
    assert [c.story_count for c in corpus.list_corpora() if c.name == "CLI"] == [1]

    assert cli.main(["--user", "admin", "import", str(story), "--corpus", "CLI 2", "--job"]) == 0
    assert "queued" in capsys.readouterr().out
    assert cli.main(["--user", "admin", "jobs"]) == 0
    assert "queued" in capsys.readouterr().out


def test_bad_file_wrong_password_and_wrong_role_are_clear_errors(annotator, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("title,body\nA,B\n")
    monkeypatch.setenv("EMOFORGE_PASSWORD", "admin-pass-123")
    assert cli.main(["--user", "admin", "import", str(bad), "--corpus", "X"]) == 2
    assert "bad.csv" in capsys.readouterr().err
    monkeypatch.setenv("EMOFORGE_PASSWORD", "wrong-password")
    assert cli.main(["--user", "admin", "jobs"]) == 2
    assert "Wrong username or password" in capsys.readouterr().err
    monkeypatch.setenv("EMOFORGE_PASSWORD", "ann-pass-1234")
    assert cli.main(["--user", "ann", "jobs"]) == 2
    assert "Only an admin" in capsys.readouterr().err


def test_generate_queues_a_run_and_prints_its_cost(admin, monkeypatch, capsys):
    from core import corpus, taxonomy
    from db.models import GenerationRun
    from db.session import read_session

    taxonomy.seed_defaults()
    corpus.load_demo_corpus()
    monkeypatch.setenv("EMOFORGE_PASSWORD", "admin-pass-123")
    assert cli.main(["--user", "admin", "generate", "--corpus", corpus.DEMO_CORPUS_NAME, "--stories", "3",
                     "--characters", "2", "--emotional", "2", "--neutral", "1"]) == 0
    out = capsys.readouterr().out
    # the paper preset: 3 character calls, one utterance call per character (6), 18 label calls, then a third
    # of the 18 utterances (6) through context, clean and rewrite
    assert "3 stories (Emo Pillars (paper)): 45 LLM calls" in out and "queued" in out
    with read_session() as session:
        assert len(session.query(GenerationRun).one().config["story_ids"]) == 3
    assert cli.main(["--user", "admin", "generate", "--corpus", "nope"]) == 2
    assert "no corpus named 'nope'" in capsys.readouterr().err
