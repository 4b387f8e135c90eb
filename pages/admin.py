"""Admin: users, taxonomies, prompt templates and label rules, and the LLM engine settings."""

import pandas as pd
import streamlit as st

from core import taxonomy as tax
from core.auth import (
    PermissionDenied,
    create_user,
    list_users,
    set_password,
    update_user,
)
from db.models import Role
from ui.engine_settings import render_engine_settings
from ui.plain import md_escape
from ui.prompts_and_labels import render_prompts_and_labels
from ui.session import flash, guard, show_flashes

actor = guard("admin")

st.title("Admin")
users_tab, taxonomies_tab, prompts_tab, engine_tab = st.tabs(["Users", "Taxonomies", "Prompts & labels", "Engine"])

ROLES = [role.value for role in Role]


def show_failure(exc: Exception) -> None:
    st.error(md_escape(exc))


# --------------------------------------------------------------------------- users

with users_tab:
    show_flashes("users")
    users = list_users(actor)
    st.dataframe(
        pd.DataFrame([{"id": u.id, "username": u.username, "role": u.role.value, "active": u.active,
                       "created": u.created_at, "last login": u.last_login_at} for u in users]),
        hide_index=True,
    )

    left, right = st.columns(2)
    with left:
        st.subheader("Create a user")
        with st.form("create_user", clear_on_submit=True):
            new_username = st.text_input("Username", key="new_user_name")
            new_password = st.text_input("Password", type="password", key="new_user_password",
                                         autocomplete="new-password")
            new_role = st.selectbox("Role", ROLES, index=ROLES.index(Role.annotator.value), key="new_user_role")
            if st.form_submit_button("Create user", type="primary"):
                try:
                    created = create_user(actor, new_username or "", new_password or "", new_role)
                except (ValueError, PermissionDenied) as exc:
                    show_failure(exc)
                else:
                    flash(f"User created ({md_escape(created.role.value)}).", scope="users")
                    st.rerun()

    with right:
        st.subheader("Change a user")
        by_id = {u.id: u for u in users}
        user_id = st.selectbox("User", list(by_id), format_func=lambda i: by_id[i].username, key="edit_user_id")
        if user_id is not None:
            user = by_id[user_id]
            with st.form(f"edit_user_{user.id}"):
                role = st.selectbox("Role", ROLES, index=ROLES.index(user.role.value), key=f"edit_role_{user.id}")
                active = st.checkbox("Active", value=user.active, key=f"edit_active_{user.id}")
                if st.form_submit_button("Save changes"):
                    try:
                        update_user(actor, user.id, role=role, active=active)
                    except (ValueError, PermissionDenied) as exc:
                        show_failure(exc)
                    else:
                        flash("User updated.", scope="users")
                        st.rerun()
            with st.form(f"reset_password_{user.id}", clear_on_submit=True):
                password = st.text_input("New password", type="password", autocomplete="new-password",
                                         key=f"new_password_{user.id}")
                if st.form_submit_button("Reset password"):
                    try:
                        set_password(actor, user.id, password or "")
                    except (ValueError, PermissionDenied) as exc:
                        show_failure(exc)
                    else:
                        st.success("Password changed.")

# --------------------------------------------------------------------------- taxonomies

def edited_rows(frame: pd.DataFrame) -> list[tuple[object, str, str]]:
    """(label id or None, name, description) of each non-empty row of a labels editor."""
    rows = []
    for record in frame.to_dict("records"):
        name = "" if pd.isna(record.get("name")) else str(record["name"])
        description = "" if pd.isna(record.get("description")) else str(record["description"])
        label_id = record.get("id")
        label_id = None if label_id is None or pd.isna(label_id) else int(label_id)
        if name.strip() or description.strip():
            rows.append((label_id, name, description))
    return rows


def save_taxonomy(taxonomy_id: int, edit: dict, confirm_removals: bool = False) -> None:
    """One core call, one transaction: renames (rows keep their label id), additions and removals together."""
    tax.update_taxonomy(actor, taxonomy_id, name=edit["name"], description=edit["description"],
                        multi_label=edit["multi_label"], labels=edit["labels"], confirm_removals=confirm_removals)


def saved(version: int) -> None:
    st.session_state.pop("taxonomy_pending_removal", None)
    st.session_state["taxonomy_editor_version"] = version + 1
    flash("Taxonomy saved.", scope="taxonomies")
    st.rerun()


LABEL_COLUMNS = {
    "id": None,  # kept (hidden) so that renames keep the label's id
    "name": st.column_config.TextColumn("Label", required=True, max_chars=tax.MAX_LABEL_LENGTH),
    "description": st.column_config.TextColumn("Description", width="large"),
}

with taxonomies_tab:
    show_flashes("taxonomies")
    taxonomies = tax.list_taxonomies()
    if taxonomies:
        st.dataframe(
            pd.DataFrame([{"id": t.id, "name": t.name, "labels": t.label_count, "multi-label": t.multi_label,
                           "description": t.description} for t in taxonomies]),
            hide_index=True,
        )
        names = {t.id: t.name for t in taxonomies}
        taxonomy_id = st.selectbox("Taxonomy", list(names), format_func=names.get, key="taxonomy_selected")
        detail = tax.get_taxonomy(taxonomy_id)
        version = st.session_state.get("taxonomy_editor_version", 0)
        with st.form(f"taxonomy_edit_{detail.id}_{version}"):
            edit_name = st.text_input("Name", value=detail.name, max_chars=tax.MAX_TAXONOMY_NAME_LENGTH)
            edit_description = st.text_area("Description", value=detail.description, height=68)
            edit_multi = st.checkbox("Multi-label (an example may carry several labels)", value=detail.multi_label)
            frame = st.data_editor(
                pd.DataFrame([{"id": l.id, "name": l.name, "description": l.description} for l in detail.labels],
                             columns=["id", "name", "description"]),
                num_rows="dynamic", hide_index=True, column_config=LABEL_COLUMNS,
                key=f"taxonomy_labels_{detail.id}_{version}",
            )
            if st.form_submit_button("Save", type="primary"):
                edit = {"name": edit_name, "description": edit_description, "multi_label": edit_multi,
                        "labels": edited_rows(frame)}
                try:
                    save_taxonomy(detail.id, edit)
                except tax.RemovalNeedsConfirmation as exc:
                    st.session_state["taxonomy_pending_removal"] = {"taxonomy_id": detail.id, "edit": edit,
                                                                    "message": str(exc)}
                except (ValueError, PermissionDenied) as exc:
                    show_failure(exc)
                else:
                    saved(version)

        pending = st.session_state.get("taxonomy_pending_removal")
        if pending and pending["taxonomy_id"] == detail.id:
            st.warning(md_escape(pending["message"]))
            confirm_col, cancel_col = st.columns(2)
            if confirm_col.button("Remove them and save", key="taxonomy_confirm_removal", type="primary"):
                try:
                    save_taxonomy(detail.id, pending["edit"], confirm_removals=True)
                except (ValueError, PermissionDenied) as exc:
                    show_failure(exc)
                else:
                    saved(version)
            if cancel_col.button("Keep the labels", key="taxonomy_cancel_removal"):
                st.session_state.pop("taxonomy_pending_removal", None)
                st.rerun()

        st.subheader("Out-of-taxonomy names")
        st.caption("Emotion names the teacher used outside this taxonomy, and what is done with them.")
        mappings = tax.list_oot_mappings(detail.id)
        if mappings:
            st.dataframe(
                pd.DataFrame([{"name": m.source_name, "action": m.action.value, "label": m.target_label or "",
                               "occurrences": m.occurrences, "note": m.note} for m in mappings]),
                hide_index=True,
            )
        else:
            st.caption("None yet.")

        with st.expander("Delete this taxonomy"):
            st.text(f"{detail.name}: {len(detail.labels)} labels, their groupings and mappings.")
            confirm = st.checkbox("Yes, delete this taxonomy", key=f"confirm_taxonomy_{detail.id}")
            if st.button("Delete taxonomy", disabled=not confirm, key=f"delete_taxonomy_{detail.id}",
                         icon=":material/delete_forever:"):
                try:
                    tax.delete_taxonomy(actor, detail.id)
                except (ValueError, PermissionDenied) as exc:
                    show_failure(exc)
                else:
                    flash("Taxonomy deleted.", scope="taxonomies")
                    st.rerun()
    else:
        st.info("No taxonomy yet.")

    left, right = st.columns(2)
    with left:
        st.subheader("Create a taxonomy")
        new_version = st.session_state.get("taxonomy_new_version", 0)
        with st.form(f"taxonomy_create_{new_version}"):
            new_name = st.text_input("Name", key=f"taxonomy_new_name_{new_version}",
                                     max_chars=tax.MAX_TAXONOMY_NAME_LENGTH)
            new_description = st.text_input("Description", key=f"taxonomy_new_description_{new_version}")
            new_multi = st.checkbox("Multi-label", value=True, key=f"taxonomy_new_multi_{new_version}")
            new_frame = st.data_editor(
                pd.DataFrame({"name": pd.Series(dtype="str"), "description": pd.Series(dtype="str")}),
                num_rows="dynamic", hide_index=True, column_config=LABEL_COLUMNS,
                key=f"taxonomy_new_labels_{new_version}",
            )
            if st.form_submit_button("Create taxonomy"):
                try:
                    tax.create_taxonomy(actor, new_name or "", new_description or "",
                                        [(n, d) for _, n, d in edited_rows(new_frame)], multi_label=new_multi)
                except (ValueError, PermissionDenied) as exc:
                    show_failure(exc)
                else:
                    st.session_state["taxonomy_new_version"] = new_version + 1
                    flash("Taxonomy created.", scope="taxonomies")
                    st.rerun()

    with right:
        st.subheader("Import a taxonomy")
        st.caption(".csv with a name (and description) column, .json list or object, or .txt with "
                   "one `name: description` per line.")
        import_round = st.session_state.get("taxonomy_import_round", 0)  # a new round empties the uploader
        upload = st.file_uploader("Taxonomy file", type=["csv", "json", "txt"], key=f"taxonomy_file_{import_round}")
        import_name = st.text_input("Name", key="taxonomy_import_name")
        import_description = st.text_input("Description", key="taxonomy_import_description")
        if st.button("Import taxonomy", key="taxonomy_import"):
            if upload is None:
                st.warning("Choose a file first.")
            else:
                try:
                    tax.import_taxonomy(actor, import_name or "", upload.name, upload.getvalue(),
                                        description=import_description or "")
                except (ValueError, PermissionDenied) as exc:
                    show_failure(exc)
                else:
                    st.session_state["taxonomy_import_round"] = import_round + 1
                    flash("Taxonomy imported.", scope="taxonomies")
                    st.rerun()

# --------------------------------------------------------------------------- engine

with prompts_tab:
    render_prompts_and_labels(actor)

with engine_tab:
    render_engine_settings(actor)
