"""First-run set-up, safe to repeat: `python -m core.bootstrap`.

Migrates the database, seeds the taxonomies and the demo corpus, converts the default teacher
model, checks the default student, and creates the first admin (password from
EMOFORGE_ADMIN_PASSWORD, or generated and printed once).
"""

from __future__ import annotations

import argparse
import os
import sys

from core import auth, config


def prepare_database(url: str | None = None) -> None:
    """Schema at head, default taxonomies and demo corpus present. Idempotent."""
    from core import corpus, taxonomy
    from core.pipeline import templates
    from db.migrate import upgrade

    upgrade(url)
    taxonomy.seed_defaults()
    templates.seed_defaults()
    corpus.load_demo_corpus()


def create_first_admin() -> None:
    username = os.environ.get("EMOFORGE_ADMIN_USER", "admin")
    generated = auth.ensure_admin(username, os.environ.get("EMOFORGE_ADMIN_PASSWORD"))
    if generated:
        # Printed once, here; only its Argon2 hash is stored.
        bar = "=" * 64
        print(f"\n{bar}\n  First admin account created\n    username: {username}\n"
              f"    password: {generated}\n  Write it down: it is not shown again.\n{bar}\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.bootstrap", description=__doc__)
    parser.add_argument("--skip-models", action="store_true", help="do not prepare the default models")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    prepare_database()
    print(f"database ready: {config.database_url().split('@')[-1]}", flush=True)
    if not args.skip_models:
        from core import models_setup

        try:
            print(f"teacher model: {models_setup.ensure_teacher()}", flush=True)
        except models_setup.TeacherFolderNotOurs as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            return 2
        print(f"student model: {models_setup.ensure_student()}", flush=True)
    create_first_admin()
    return 0


if __name__ == "__main__":
    sys.exit(main())
