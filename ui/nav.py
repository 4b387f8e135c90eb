"""The pages of the app: their ids (core.auth.PAGE_ROLES keys), files, titles, icons and sections."""

from __future__ import annotations

from dataclasses import dataclass

from core.auth import Actor, can_open


@dataclass(frozen=True)
class PageSpec:
    page_id: str
    title: str
    icon: str

    @property
    def path(self) -> str:
        return f"pages/{self.page_id}.py"


SECTIONS: dict[str, tuple[PageSpec, ...]] = {
    "Data": (
        PageSpec("dashboard", "Dashboard", ":material/dashboard:"),
        PageSpec("corpus", "Corpus", ":material/library_books:"),
        PageSpec("generate", "Generate", ":material/auto_awesome:"),
    ),
    "Review": (
        PageSpec("review", "Review", ":material/rate_review:"),
        PageSpec("curate", "Curate", ":material/filter_alt:"),
    ),
    "Models": (
        PageSpec("train", "Train", ":material/model_training:"),
        PageSpec("playground", "Playground", ":material/science:"),
    ),
    "Project": (
        PageSpec("export", "Export", ":material/download:"),
        PageSpec("jobs", "Jobs", ":material/pending_actions:"),
        PageSpec("admin", "Admin", ":material/admin_panel_settings:"),
    ),
}


def visible_sections(actor: Actor | None) -> dict[str, list[PageSpec]]:
    """The sections and pages this actor's role may open (empty sections left out)."""
    sections = {name: [p for p in pages if can_open(actor, p.page_id)] for name, pages in SECTIONS.items()}
    return {name: pages for name, pages in sections.items() if pages}
