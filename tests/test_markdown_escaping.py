"""Text from data or from the LLM never reaches Streamlit's markdown unescaped (issue 14, point 6).

Every markdown-rendering call in app.py, pages/ and ui/ (st.markdown, st.write, st.caption, st.success /
error / info / warning / toast, titles and headers, and widget labels, which Streamlit renders as
markdown too) is read from the source: its text must be a literal, a call of `ui.plain.md_escape`, a
number, or an f-string / concatenation / local variable built only from those. A helper that passes
its parameter on to such a call (ui.session.flash) becomes such a call itself. Generated text shown
with st.text, st.dataframe or st.code is plain and not checked. Then one page is rendered with hostile
names to see the escape at work.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "ui").glob("*.py")])

# Streamlit calls whose first argument is rendered as markdown (a body or a widget label).
MARKDOWN_CALLS = {
    "markdown", "write", "caption", "success", "error", "info", "warning", "exception", "toast", "title",
    "header", "subheader", "expander", "popover", "status", "button", "download_button", "form_submit_button",
    "link_button", "page_link", "checkbox", "toggle", "radio", "selectbox", "multiselect", "pills",
    "segmented_control", "select_slider", "slider", "text_input", "text_area", "number_input", "date_input",
    "time_input", "file_uploader", "color_picker", "metric", "tabs", "progress",
}
# Widgets that render their *options* as markdown too (selectbox and multiselect options are plain text).
MARKDOWN_OPTIONS = {"radio", "pills", "segmented_control"}
# Names that hold numbers (ids, counts, positions): safe inside an f-string.
NUMBER_NAMES = {"id", "position", "version", "total", "page", "pages", "count", "done", "size", "current"}
# md_escape; numbers; ui.engine_settings._inline_code (a code span: nothing inside it is markdown);
# ui.jobs.progress_caption (done / total, rate and ETA: numbers only).
SAFE_FUNCTIONS = {"md_escape", "len", "int", "float", "round", "_inline_code", "progress_caption"}


@dataclass
class Finding:
    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


class Checker:
    def __init__(self) -> None:
        # function name -> index of the argument rendered; ui.session.flash keeps its message for st.success.
        self.sinks: dict[str, int] = {**{name: 0 for name in MARKDOWN_CALLS}, "flash": 0}
        self.findings: list[Finding] = []

    def run(self) -> list[Finding]:
        trees = {path: ast.parse(path.read_text()) for path in FILES}
        before = -1
        while before != len(self.sinks):  # helpers that forward a parameter become sinks: to a fixed point
            before = len(self.sinks)
            self.findings = []
            for path, tree in trees.items():
                self._check_module(path, tree)
        return self.findings

    def _check_module(self, path: Path, tree: ast.Module) -> None:
        scopes = [(tree, None)] + [(n, n) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        for scope, function in scopes:
            for node in _own_nodes(scope):
                if isinstance(node, ast.Call):
                    self._check_call(path, node, scope, function)

    def _check_call(self, path: Path, call: ast.Call, scope, function) -> None:
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
        if name not in self.sinks:
            return
        index = self.sinks[name]
        args = list(call.args[index:index + 1]) + [k.value for k in call.keywords if k.arg in ("label", "body", "help")]
        if name == "progress":
            args = [k.value for k in call.keywords if k.arg == "text"] + list(call.args[1:2])
        if name in MARKDOWN_OPTIONS:
            args += [k.value for k in call.keywords if k.arg == "format_func"]
        for arg in args:
            unsafe = self._unsafe(arg, scope, function)
            if unsafe is None:
                continue
            parameters = [a.arg for a in function.args.args] if function is not None else []
            if isinstance(unsafe, ast.Name) and unsafe.id in parameters and unsafe is arg:
                self.sinks.setdefault(function.name, parameters.index(unsafe.id))  # a forwarding helper
                continue
            self.findings.append(Finding(f"{path.relative_to(ROOT)}:{call.lineno} {name}", ast.unparse(unsafe)))

    def _unsafe(self, node, scope, function, depth: int = 0):
        """None when `node` yields text safe in markdown, else the part that is not."""
        if depth > 8:
            return node
        if isinstance(node, ast.Constant):
            return None
        if isinstance(node, ast.JoinedStr):
            return next((u for v in node.values if (u := self._unsafe(v, scope, function, depth + 1))), None)
        if isinstance(node, ast.FormattedValue):
            if node.format_spec is not None and _numeric_spec(node.format_spec):
                return None
            return self._unsafe(node.value, scope, function, depth + 1)
        if isinstance(node, ast.BinOp):
            return self._unsafe(node.left, scope, function, depth + 1) or self._unsafe(node.right, scope, function,
                                                                                       depth + 1)
        if isinstance(node, ast.BoolOp):
            return next((u for v in node.values if (u := self._unsafe(v, scope, function, depth + 1))), None)
        if isinstance(node, ast.IfExp):
            return self._unsafe(node.body, scope, function, depth + 1) or self._unsafe(node.orelse, scope, function,
                                                                                       depth + 1)
        if isinstance(node, (ast.List, ast.Tuple)):
            return next((u for e in node.elts if (u := self._unsafe(e, scope, function, depth + 1))), None)
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in SAFE_FUNCTIONS:
                return None
            if called == "get" and isinstance(node.func, ast.Attribute) and _constant_mapping(node.func.value):
                return next((u for a in node.args[1:] if (u := self._unsafe(a, scope, function, depth + 1))), None)
            if called == "join" and isinstance(node.func, ast.Attribute):
                return self._unsafe(node.func.value, scope, function, depth + 1) or next(
                    (u for a in node.args if (u := self._unsafe(a, scope, function, depth + 1))), None)
            return node
        if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
            return self._unsafe(node.elt, scope, function, depth + 1)
        if isinstance(node, ast.Lambda):
            return self._unsafe(node.body, scope, function, depth + 1)
        if isinstance(node, ast.Attribute):
            if node.attr == "get" and _constant_mapping(node.value):
                return None  # {code: "text"}.get, LABELS.get: a format_func over texts written in the code
            return None if _number_name(node.attr) or node.attr.isupper() else node
        if isinstance(node, ast.Name):
            if _number_name(node.id) or node.id.isupper():
                return None
            values = _assigned_values(scope, node.id)
            if not values:
                return node
            return next((u for v in values if (u := self._unsafe(v, scope, function, depth + 1))), None)
        if isinstance(node, ast.Subscript) and _constant_mapping(node.value):
            return None  # a module constant's entry (titles, labels written in the code)
        return node


def _constant_mapping(node) -> bool:
    """A dict literal of literal texts, or a module constant (UPPER_CASE name or attribute)."""
    if isinstance(node, ast.Dict):
        return all(isinstance(v, ast.Constant) for v in node.values)
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name.isupper()


def _loop_values(loop: ast.For, name: str) -> list | None:
    """The values a for-loop gives `name` when it iterates over a literal tuple or list, else None."""
    if not isinstance(loop.iter, (ast.Tuple, ast.List)):
        return None
    if isinstance(loop.target, ast.Name):
        return list(loop.iter.elts)
    if isinstance(loop.target, ast.Tuple):
        names = [t.id if isinstance(t, ast.Name) else None for t in loop.target.elts]
        if name in names and all(isinstance(e, (ast.Tuple, ast.List)) for e in loop.iter.elts):
            return [e.elts[names.index(name)] for e in loop.iter.elts]
    return None


def _own_nodes(scope):
    """The nodes of a module or function, not those of the functions nested in it."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef):
            stack.extend(ast.iter_child_nodes(node))


def _assigned_values(scope, name: str) -> list:
    values = []
    for node in _own_nodes(scope):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            values.append(node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            values.append(node.value)
        elif isinstance(node, (ast.For, ast.comprehension)) and name in {
                n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}:
            literal = _loop_values(node, name) if isinstance(node, ast.For) else None
            if literal is None:
                return []  # a loop variable: whatever the data holds
            values += literal
        elif isinstance(node, ast.Assign) and any(name in {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
                                                  for t in node.targets):
            return []  # unpacked from something: unknown
    return values


def _number_name(name: str) -> bool:
    return name in NUMBER_NAMES or name.endswith(("_id", "_count", "_total", "_done")) or name.startswith(("n_", "num_"))


def _numeric_spec(spec: ast.JoinedStr) -> bool:
    text = "".join(v.value for v in spec.values if isinstance(v, ast.Constant))
    return bool(text) and text[-1] in "dfegn%," or text.endswith((",", "d"))


def test_no_data_reaches_markdown_unescaped():
    findings = Checker().run()
    assert not findings, "text that may come from data reaches markdown; wrap it in md_escape():\n" + "\n".join(
        map(str, findings))


# --------------------------------------------------------------------------- at work, in a rendered page

HOSTILE = "**evil** [click](http://evil.example) `x` <b>y</b> #1"  # a normalised label name too


def test_a_corpus_name_and_an_oot_name_are_shown_as_written(admin):
    from core.corpus import list_corpora
    from core.taxonomy import get_taxonomy_by_name, list_oot_mappings, seed_defaults
    from db.models import OOTMapping
    from db.session import write_session
    from tests.test_pages import open_page
    from ui.plain import md_escape

    at = open_page(admin, "corpus")
    at.file_uploader(key="corpus_files_0").set_value([("tale.txt", b"A fox met a crow.\n", "text/plain")])
    at.text_input(key="corpus_new_name").input(HOSTILE)
    at.button(key="corpus_import").click().run()
    assert not at.exception, at.exception
    assert HOSTILE in [c.name for c in list_corpora()]
    assert md_escape(HOSTILE) in at.success[0].value and HOSTILE not in at.success[0].value

    seed_defaults()
    taxonomy_id = get_taxonomy_by_name("GoEmotions").id
    with write_session() as session:
        session.add(OOTMapping(taxonomy_id=taxonomy_id, source_name=HOSTILE, occurrences=3))
    at = open_page(admin, "admin")
    at.selectbox(key="oot_taxonomy").set_value(taxonomy_id).run()
    next(b for b in at.button if b.label == "Apply").click().run()  # ours, mapped onto the first label
    assert not at.exception, at.exception
    shown = [s.value for s in at.success]
    assert any(md_escape(HOSTILE) in s for s in shown) and not any(HOSTILE in s for s in shown), shown
    assert [(m.source_name, m.action.value) for m in list_oot_mappings(taxonomy_id) if m.source_name == HOSTILE] == [
        (HOSTILE, "map")]
