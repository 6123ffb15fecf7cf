"""审计 Audit log."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import psycopg
import streamlit as st

from dashboard import actions, fmt, nav, queries, session
from dashboard.auth import User
from dashboard.safe import csv_bytes, md
from dashboard.settings import DashboardSettings

PAGE = nav.Page(title="审计 Audit log", url_path="audit", roles=nav.ADMIN, icon=":material/policy:")


def render(settings: DashboardSettings, user: User) -> None:
    """The full audit log, filtered by user, action, time and person, exportable. Admins
    only: the page says so, and the database returns no row to anyone else."""
    st.title("审计日志 · Audit log")
    if user.role != "admin":
        st.error("仅管理员 Admins only.")
        return
    conn = session.conn(settings.reader_dsn())
    cols = st.columns(4)
    who = cols[0].text_input("用户 User", key="audit-user")
    action = cols[1].selectbox(
        "操作 Action", [None, *queries.audit_actions(conn)],
        format_func=lambda a: fmt.code("action", a) if a else "— 全部 all —",
    )  # fmt: skip
    days = cols[2].selectbox("时间 Within", [1, 7, 30, 365, 3650], index=1,
                             format_func=lambda d: f"{d} 天 days")  # fmt: skip
    person = cols[3].text_input("人员 Person (subject)", key="audit-person")
    log = queries.audit_log_filtered(
        conn, who.strip() or None, action, timedelta(days=int(days or 7)), person.strip() or None
    )
    st.caption(f"{len(log)} 条 rows (最新 newest first, at most 5,000)")
    reveal = queries.reveal_categories(conn)
    shown = fmt.table(
        log.assign(category=log.category.map(lambda c: reveal.get(c, c) if c else None)),
        settings.time_zone, coded={"category": "", "reason": "refusal"},
    )  # fmt: skip
    st.dataframe(shown, hide_index=True, width="stretch")
    st.download_button(
        "导出 CSV Export", csv_bytes(shown), file_name="audit-log.csv", mime="text/csv"
    )
    _lockouts_section(settings)


LOCKOUT_KINDS = fmt.CODES["lockout"]


def _local_minutes(times: pd.Series, missing: str, time_zone: str) -> list[str]:
    """timestamptz values as village-local ``2026-11-30 04:02`` text, ``missing`` for none."""
    return [missing if pd.isna(t) else fmt.minutes(t, time_zone) for t in times]


def _lockouts_section(settings: DashboardSettings) -> None:
    """The current sign-in lockouts (accounts locked after wrong passwords, blocked client
    addresses), each of which the admin can lift: the database checks that the session is an
    admin's and audits the lift as ``lockout_lifted`` (migrations 0060, 0111)."""
    st.subheader("登录锁定 · Sign-in lockouts")
    done = st.session_state.pop("lockout-lifted", None)
    if done:
        st.success(md(done))
    conn = session.conn(settings.writer_dsn())  # current, not a replica's lagging copy
    found = queries.lockouts(conn)
    if found.empty:
        st.caption("当前没有被锁定的账户或地址 No account or address is locked out.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "类型 Kind": found.kind.map(LOCKOUT_KINDS),
                "账户或地址 Account or address": found.subject,
                "锁定于 Locked since": _local_minutes(found.since, "—", settings.time_zone),
                "解除于 Until": _local_minutes(
                    found.until, "管理员解除 until an admin lifts it", settings.time_zone
                ),
            }
        ),
        hide_index=True,
    )
    # Options are the lockouts themselves, so a choice never points at another row later.
    labels = {
        f"{kind}\t{subject}": f"{LOCKOUT_KINDS[kind]} · {subject}"
        for kind, subject in zip(found.kind, found.subject, strict=True)
    }
    pick = st.selectbox(
        "解除哪一个 Lift which", list(labels), format_func=labels.__getitem__, key="lockout-pick"
    )
    if pick is not None and st.button("解除锁定 Lift the lockout", key="lockout-lift"):
        kind, subject = str(pick).split("\t", 1)
        try:
            actions.lift_lockout(conn, kind, subject)
        except psycopg.errors.InvalidParameterValue as exc:
            st.error(f"{exc.diag.message_primary} (刷新 refresh the page)")
            return
        st.session_state["lockout-lifted"] = f"已解除 Lifted: {labels[pick]} (已记录审计 audited)"
        st.rerun()
