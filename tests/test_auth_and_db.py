"""Users, roles and the database set-up rules (pragmas, write locks, migrations in step with models)."""

from __future__ import annotations

import threading
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from core import auth
from db.models import Base, Role, User
from db.session import get_engine, read_session, sqlite_module, write_session


def test_passwords_are_hashed_with_argon2_and_never_stored_in_clear(admin):
    with read_session() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "admin"))
    assert stored.startswith("$argon2id$") and "admin-pass-123" not in stored
    assert auth.verify_password(stored, "admin-pass-123") and not auth.verify_password(stored, "nope")


def test_login_refuses_wrong_password_unknown_user_and_inactive_user(admin):
    for username, password in (("admin", "wrong-password"), ("ghost", "admin-pass-123")):
        with pytest.raises(auth.AuthError, match="Wrong username or password"):
            auth.authenticate(username, password)
    user = auth.create_user(admin, "bob", "bob-password-1", Role.annotator)
    auth.update_user(admin, user.id, active=False)
    with pytest.raises(auth.AuthError):
        auth.authenticate("bob", "bob-password-1")


def test_only_admins_manage_users_and_everyone_may_change_their_own_password(admin, annotator):
    with pytest.raises(auth.PermissionDenied):
        auth.create_user(annotator, "eve", "eve-password-1")
    with pytest.raises(auth.PermissionDenied):
        auth.list_users(annotator)
    with pytest.raises(auth.PermissionDenied):
        auth.set_password(annotator, admin.id, "taken-over-123")
    auth.set_password(annotator, annotator.id, "new-password-99")
    assert auth.authenticate("ann", "new-password-99").role == Role.annotator
    assert [u.username for u in auth.list_users(admin)] == ["admin", "ann"]


def test_user_rules(admin):
    with pytest.raises(ValueError, match="at least 8"):
        auth.create_user(admin, "short", "123")
    with pytest.raises(ValueError, match="taken"):
        auth.create_user(admin, "admin", "another-pass-1")
    with pytest.raises(ValueError, match="last active admin"):
        auth.update_user(admin, admin.id, role=Role.annotator)


def test_page_access_by_role(admin, annotator):
    assert all(auth.can_open(admin, page) for page in auth.PAGE_ROLES)
    allowed = {page for page in auth.PAGE_ROLES if auth.can_open(annotator, page)}
    assert allowed == {"review", "playground"}
    for page in ("admin", "generate", "train", "export", "corpus", "jobs"):
        with pytest.raises(auth.PermissionDenied):
            auth.require_page(annotator, page)
    with pytest.raises(auth.PermissionDenied, match="log in"):
        auth.require_page(None, "review")


def test_first_admin_is_created_once_with_a_generated_password(database):
    generated = auth.ensure_admin("root", None)
    assert generated and len(generated) >= 12
    assert auth.authenticate("root", generated).is_admin
    assert auth.ensure_admin("root", None) is None  # an admin exists: nothing printed again


def test_sqlite_connections_use_wal_busy_timeout_foreign_keys_and_a_fixed_sqlite(sqlite_database):
    version = tuple(int(part) for part in sqlite_module().sqlite_version.split("."))
    assert version >= (3, 51, 3), "the WAL-reset corruption fix is needed for app + worker writes"
    with get_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_sqlite_write_transactions_take_the_write_lock_up_front(sqlite_database):
    """A second read-modify-write waits for the first instead of losing its update or failing."""
    auth.ensure_admin("admin", "admin-pass-123")
    first_has_read = threading.Event()
    errors: list[BaseException] = []

    def bump(wait_for: threading.Event | None):
        try:
            if wait_for:
                wait_for.wait(timeout=5)
            with write_session() as session:
                user = session.scalar(select(User).where(User.role == Role.admin))
                if wait_for is None:
                    first_has_read.set()
                    time.sleep(0.3)  # the second writer starts while we hold the lock
                user.username = user.username + "!"
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=bump, args=(None,)), threading.Thread(target=bump, args=(first_has_read,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with read_session() as session:
        assert session.scalar(select(User.username)) == "admin!!"


def test_migrations_match_the_models(database):
    with get_engine().connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


def test_foreign_keys_cascade(database, admin):
    from db.models import Corpus, Passage, Story

    with write_session() as session:
        corpus = Corpus(name="c")
        corpus.stories.append(Story(position=0, text="t", content_hash="h", passages=[Passage(position=0, text="t")]))
        session.add(corpus)
    with write_session() as session:
        session.execute(text("DELETE FROM corpora"))
    with read_session() as session:
        assert session.scalar(text("SELECT count(*) FROM passages")) == 0


def _insert(url: str, *statements: str) -> None:
    from db.session import dispose_engines

    with get_engine(url).begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    dispose_engines()


def test_cache_keys_keep_their_answers_through_the_move_to_16_bytes(database):
    """0017 cuts each 64-digit key to its first 32 digits, stored as bytes: what request_key gives now, so
    an answer cached before the upgrade is still found (on SQLite through a table rebuild)."""
    from alembic import command

    from core.llm.runner import answered_keys
    from core.llm.types import ChatRequest, request_digest, request_key
    from db.migrate import alembic_config, upgrade
    from db.session import dispose_engines

    request = ChatRequest(({"role": "user", "content": "How does the miller feel?"},))
    command.downgrade(alembic_config(database), "0016")
    dispose_engines()
    old_key = request_digest("openai", "m", request)  # a key as it was stored before 0017
    _insert(database, "INSERT INTO llm_requests (key, stage, engine, model, request, status, raw_text, attempts, "
                      "prompt_tokens, completion_tokens, created_at) VALUES "
                      f"('{old_key}', 'labels', 'openai', 'm', '{{}}', 'ok', 'calm', 1, 0, 0, CURRENT_TIMESTAMP)")
    upgrade(database)
    dispose_engines()
    key = request_key("openai", "m", request)
    assert key == old_key[:32]
    assert answered_keys([key]) == {key}


def test_contextual_variants_lose_only_their_copied_suggestions_and_show_their_parents(database):
    """0018: the suggestions the pipeline copied onto each contextual variant go (readers go through the
    parent); a row that is no copy stays, the OOT counts are recounted, and the downgrade copies back."""
    from alembic import command

    from core.labels import oot_names, teacher_scores
    from core.taxonomy import seed_defaults
    from db.migrate import alembic_config, upgrade
    from db.session import dispose_engines

    command.downgrade(alembic_config(database), "0017")
    dispose_engines()
    seed_defaults()
    with read_session() as session:
        taxonomy_id, joy, fear = session.execute(text(
            "SELECT l.taxonomy_id, l.id, (SELECT id FROM labels WHERE name = 'fear' AND taxonomy_id = l.taxonomy_id) "
            "FROM labels l JOIN taxonomies t ON t.id = l.taxonomy_id WHERE t.name = 'GoEmotions' AND l.name = 'joy'")).one()
    dispose_engines()
    example = ("INSERT INTO examples (kind, text, stage, source, meta, status, created_at, taxonomy_id, parent_id) "
               "VALUES ('{}', '{}', 'x', '', '{{}}', 'pending', CURRENT_TIMESTAMP, " + str(taxonomy_id) + ", {})")
    suggestion = ("INSERT INTO suggestions (example_id, label_id, oot_name, score, agent, created_at) "
                  "VALUES ({}, {}, {}, {}, '{}', CURRENT_TIMESTAMP)")
    _insert(database,
            example.format("contextless", "a", "NULL"), example.format("contextual", "b", 1),
            example.format("contextual", "c", 1),
            "INSERT INTO oot_mappings (taxonomy_id, source_name, action, occurrences, note) "
            f"VALUES ({taxonomy_id}, 'dread', 'pending', 3, '')",
            *[suggestion.format(e, joy, "NULL", 0.8, "teacher:m") for e in (1, 2, 3)],
            *[suggestion.format(e, "NULL", "'dread'", 0.4, "teacher:m") for e in (1, 2, 3)],
            suggestion.format(3, fear, "NULL", 0.6, "user:ann"))  # no copy: stays
    upgrade(database)
    dispose_engines()
    with read_session() as session:
        left = session.execute(text("SELECT example_id, agent FROM suggestions ORDER BY id")).all()
        counted = session.scalar(text("SELECT occurrences FROM oot_mappings WHERE source_name = 'dread'"))
    assert left == [(1, "teacher:m"), (1, "teacher:m"), (3, "user:ann")] and counted == 1
    scores = teacher_scores([1, 2, 3])
    assert scores[2] == scores[1] == {"joy": 0.8}  # variants show the parent's, not what is left on them
    assert oot_names([1, 2, 3]) == {e: [("dread", "pending")] for e in (1, 2, 3)}
    command.downgrade(alembic_config(database), "0017")  # each variant without a suggestion gets copies back
    dispose_engines()
    with read_session() as session:
        back = session.execute(text("SELECT example_id, count(*) FROM suggestions GROUP BY example_id "
                                    "ORDER BY example_id")).all()
        counted = session.scalar(text("SELECT occurrences FROM oot_mappings WHERE source_name = 'dread'"))
    assert back == [(1, 2), (2, 2), (3, 1)] and counted == 2


def test_upgrading_an_old_sqlite_database_keeps_rows_that_reference_a_rebuilt_table(tmp_path):
    """SQLite rebuilds a table to alter it (copy, DROP the old one): with foreign keys on, that DROP deleted
    every row referencing it ON DELETE CASCADE. Upgrading past 0012 (models rebuilt) lost every evaluation."""
    from alembic import command

    from db.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0011")
    _insert(url, "INSERT INTO models (name, kind, path, dataset_hash, labels, thresholds, config, metrics, created_at) "
                 "VALUES ('m', 'classifier', '/m', 'h', '[]', '{}', '{}', '{}', CURRENT_TIMESTAMP)",
            "INSERT INTO evaluations (model_id, benchmark, figures, created_at) VALUES (1, 'b', '{}', CURRENT_TIMESTAMP)",
            "INSERT INTO examples (kind, text, stage, source, meta, status, created_at, expressiveness) "
            "VALUES ('contextless', 'a', 'utterances', '', '{}', 'pending', CURRENT_TIMESTAMP, 0.7)",
            "INSERT INTO examples (kind, text, stage, source, meta, status, created_at, expressiveness, parent_id) "
            "VALUES ('contextual', 'b', 'clean', '', '{}', 'pending', CURRENT_TIMESTAMP, 0.7, 1)")
    upgrade(url)
    with get_engine(url).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM evaluations")).scalar() == 1
        # 0016: the context-less example's expressiveness moved to its own table (the contextual copy is read
        # from the parent)
        assert connection.execute(text("SELECT example_id, value FROM expressiveness")).all() == [(1, 0.7)]
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # back on for the application
    command.downgrade(alembic_config(url), "0015")  # and back: each example gets its value again
    with get_engine(url).connect() as connection:
        assert connection.execute(text("SELECT id, expressiveness FROM examples ORDER BY id")).all() == [(1, 0.7), (2, 0.7)]
