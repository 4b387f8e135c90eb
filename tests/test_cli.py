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


# --------------------------------------------------------------------------- the Export and Review pages' long operations


def _login(monkeypatch, password: str = "admin-pass-123") -> None:
    monkeypatch.setenv("EMOFORGE_PASSWORD", password)


def test_import_labelled_now_as_an_evaluation_set_and_as_a_job(admin, tmp_path, monkeypatch, capsys):
    from core import taxonomy
    from core.jobs import list_jobs

    taxonomy.seed_defaults()
    _login(monkeypatch)
    labelled = tmp_path / "mine.csv"
    labelled.write_text("text,labels\nWhat a lovely day,joy\nGo away,anger\nHmm,hangry\n")
    assert cli.main(["import-labelled", str(labelled), "--source", "mine"]) == 0
    out = capsys.readouterr().out
    assert "3 examples added from 'mine'" in out and "unknown labels left out: hangry (1)" in out
    evaluation = tmp_path / "held.jsonl"
    evaluation.write_text('{"text": "So scared", "labels": ["fear"]}\n{"text": "Yay", "labels": ["joy"]}\n')
    assert cli.main(["import-labelled", str(evaluation), "--source", "held", "--evaluation"]) == 0
    assert "evaluation set: dataset version" in capsys.readouterr().out
    assert cli.main(["import-labelled", str(labelled), "--source", "later", "--job"]) == 0
    assert "queued" in capsys.readouterr().out
    assert [j.kind for j in list_jobs(admin)] == ["import_labelled"]

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,labels\ncaf\xe9,joy\n")
    assert cli.main(["import-labelled", str(bad), "--source", "bad", "--job"]) == 2
    assert "bad.csv: not UTF-8 text" in capsys.readouterr().err
    assert len(list_jobs(admin)) == 1  # a bad file queues nothing
    assert cli.main(["import-labelled", str(labelled), "--source", "x", "--taxonomy", "Nope"]) == 2
    assert "no taxonomy named 'Nope'" in capsys.readouterr().err


def test_freeze_with_the_default_or_given_ratios_now_or_as_a_job(admin, monkeypatch, capsys):
    from core.datasets import versions
    from core.jobs import list_jobs
    from tests.curate_support import add_example, make_stories

    stories = make_stories(10)
    for i in range(20):
        add_example(f"Line {i}", {"joy": 0.9} if i % 2 else {"sadness": 0.7}, kind="contextual",
                    story_id=stories[i % 10])
    add_example("Context-free", {"joy": 0.9}, story_id=stories[0])
    _login(monkeypatch)
    assert cli.main(["freeze", "contextual only", "--kind", "contextual"]) == 0
    assert "version 1 frozen: 20 examples" in capsys.readouterr().out
    first = versions.get_version(admin, 1)
    assert first.split_config["ratios"] == {"train": 0.9, "dev": 0.05, "test": 0.05}  # core's default for the kind
    assert cli.main(["freeze", "again", "--kind", "contextual"]) == 0
    assert "nothing changed since version 1" in capsys.readouterr().out
    assert cli.main(["freeze", "all", "--ratios", "0.5,0.25,0.25", "--seed", "4", "--filter",
                     '{"labels": ["joy"]}']) == 0
    assert "version 2 frozen: 11 examples" in capsys.readouterr().out
    second = versions.get_version(admin, 2)
    assert second.split_config["ratios"] == {"train": 0.5, "dev": 0.25, "test": 0.25}
    assert second.split_config["seed"] == 4
    assert cli.main(["freeze", "big", "--job"]) == 0
    assert "queued" in capsys.readouterr().out and [j.kind for j in list_jobs(admin)] == ["dataset_freeze"]

    assert cli.main(["freeze", "odd", "--ratios", "0.5,0.5"]) == 2
    assert "--ratios takes 3 numbers" in capsys.readouterr().err
    assert cli.main(["freeze", "odd", "--filter", '{"colour": "red"}']) == 2
    assert "unknown filter field 'colour'" in capsys.readouterr().err
    assert cli.main(["freeze", "odd", "--filter", "[1]"]) == 2
    assert "--filter takes a JSON object" in capsys.readouterr().err
    assert cli.main(["freeze", "none", "--label", "grief"]) == 2
    assert "No example matches" in capsys.readouterr().err
    assert len(versions.list_versions(admin)) == 2


def test_campaign_create_list_and_results_as_csv(admin, annotator, tmp_path, monkeypatch, capsys):
    import csv
    import io

    from core.jobs import list_jobs
    from core.review.campaigns import get_campaign
    from core.review.queue import next_item
    from core.review.responses import save_answers
    from tests.review_support import make_examples

    make_examples([{"text": f"Line {i}", "labels": {"joy": 0.9} if i % 2 else {"anger": 0.8}} for i in range(6)])
    guidelines = tmp_path / "guide.md"
    guidelines.write_text("Pick every emotion you hear.")
    _login(monkeypatch)
    assert cli.main(["campaign", "create", "--name", "Check", "--task", "verification", "--annotators", "ann",
                     "--per-emotion", "2", "--guidelines", str(guidelines)]) == 0
    assert "campaign 1 (Check, verification): 4 items" in capsys.readouterr().out
    assert cli.main(["campaign", "create", "--name", "Later", "--task", "verification", "--annotators", "ann",
                     "--job"]) == 0
    assert "queued" in capsys.readouterr().out and [j.kind for j in list_jobs(admin)] == ["review_campaign"]
    assert cli.main(["campaign", "list"]) == 0
    assert "0/4 done  Check" in capsys.readouterr().out

    assert get_campaign(admin, 1).guidelines == "Pick every emotion you hear."
    item = next_item(annotator, 1)
    picked = item.choices["emotions"][0]  # verification offers each item its own choices
    save_answers(annotator, item.item_id, {"emotions": [picked]}, submit=True)
    assert cli.main(["campaign", "results", "1"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["annotator"], r["question"], r["value"], r["status"]) for r in rows] == [
        ("ann", "emotions", f'["{picked}"]', "submitted"), ("ann", "comment", "", "submitted")]
    out = tmp_path / "answers.csv"
    assert cli.main(["campaign", "results", "1", "--out", str(out)]) == 0
    assert "2 rows written" in capsys.readouterr().out and "ann,emotions" in out.read_text()
    assert cli.main(["campaign", "results", "1", "--agreement"]) == 0
    assert capsys.readouterr().out.startswith("question,")

    assert cli.main(["campaign", "create", "--name", "X", "--task", "verification", "--annotators", "nobody"]) == 2
    assert "no active user named 'nobody'" in capsys.readouterr().err
    assert cli.main(["campaign", "create", "--name", "X", "--task", "gossip", "--annotators", "ann"]) == 2
    assert "Unknown review task 'gossip'" in capsys.readouterr().err
    assert cli.main(["campaign", "results", "9"]) == 2
    assert "No campaign with id 9" in capsys.readouterr().err
    _login(monkeypatch, "ann-pass-1234")
    assert cli.main(["--user", "ann", "campaign", "results", "1"]) == 2
    assert "Only an admin" in capsys.readouterr().err


def test_campaign_preset_creates_the_four_paper_campaigns_or_none(admin, monkeypatch, capsys):
    from core import auth
    from core.review.campaigns import list_campaigns
    from tests.test_review_tasks import _with_parents

    for name in ("ann", "bob", "cy"):
        auth.create_user(admin, name, f"{name}-pass-1234", "annotator")
    _with_parents([(f"I am so happy {i}!", f"Well, look at that {i}.") for i in range(3)])
    _login(monkeypatch)
    assert cli.main(["campaign", "preset", "--annotators", "ann,bob"]) == 2
    assert "needs 3 annotators" in capsys.readouterr().err and list_campaigns(admin) == []
    assert cli.main(["campaign", "preset", "--annotators", "ann,bob,cy", "--items", "4"]) == 0
    out = capsys.readouterr().out
    assert {c.task for c in list_campaigns(admin)} == {"verification", "rewrite", "personalization", "diversity"}
    assert out.count("campaign ") == 4
