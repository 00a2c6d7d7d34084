"""The broadcast's settings (migration 037), proven: a private channel that the
browsers' roles can read and nothing else, and a limit with a trailing send.

The private row probes as Realtime authorises a private channel: probe
messages are inserted (as the checker), then, as the browser's role with its
JWT claims and realtime.topic set to the channel, it SELECTs them; an INSERT
as that role must be refused. All of it in a savepoint that is rolled back.
"""

from __future__ import annotations

import json
import uuid

import psycopg

from genisss_cli.core import broadcast, schema
from genisss_cli.core.checks.model import (
    NO_BROADCAST,
    RELAY,
    CheckResult,
    Context,
    Findings,
    one,
    reason,
)

PRIVATE_ROW = "broadcast private"
TRAILING_ROW = "broadcast trailing send"
APPLY_FIX = f"SELECT {schema.BROADCAST_APPLY}()"
OTHER_TOPIC = "genisss-check-other-topic"  # a topic no policy of ours may open
NOT_037 = "migration 037 is not applied (see migration)"
PENDING_GRACE = 5.0  # seconds past 1/R + 1 after which an unsent change is reported


def _preconditions(ctx: Context, name: str) -> CheckResult | broadcast.Settings:
    if not one(ctx.conn, "SELECT to_regprocedure(%s) IS NOT NULL", [schema.REALTIME_SEND])[0]:
        return CheckResult(name, "skipped", NO_BROADCAST)
    settings = broadcast.read(ctx.conn)
    if settings is None:
        return CheckResult(name, "skipped", NOT_037)
    if not one(ctx.conn, "SELECT to_regclass(%s) IS NOT NULL", [schema.REALTIME_MESSAGES])[0]:
        return CheckResult(name, "skipped", f"{schema.REALTIME_MESSAGES} does not exist (see broadcast)")
    return settings


# -- private channel ----------------------------------------------------------------------------


def check_private(ctx: Context) -> CheckResult:
    settings = _preconditions(ctx, PRIVATE_ROW)
    if isinstance(settings, CheckResult):
        return settings
    f = Findings(PRIVATE_ROW)
    policy = f"{schema.BROADCAST_POLICY} on {schema.REALTIME_MESSAGES}"
    if not settings.private:
        if settings.policy:
            f.warn(f"the channel is public, but policy {policy} remains", APPLY_FIX)
        return f.result("public channel: messages are public, no policy needed (genisss broadcast --private "
                        "to change)")
    if not settings.policy:
        f.fail(f"private messages, but policy {policy} is missing: no browser may join the channel, "
               "none receives the counter", APPLY_FIX)
        return f.result("")
    if not one(ctx.conn, "SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(%s)",
               [schema.REALTIME_MESSAGES])[0]:
        f.fail(f"row level security is off on {schema.REALTIME_MESSAGES}: a role that may SELECT it reads "
               "every topic", f"ALTER TABLE {schema.REALTIME_MESSAGES} ENABLE ROW LEVEL SECURITY")
    roles = [r for r in schema.API_ROLES if r in ctx.roles]
    if not roles:
        f.warn(f"no {' or '.join(schema.API_ROLES)} role here: cannot probe as a browser would")
        return f.result("")
    for role in roles:
        _probe(ctx, role, f)
    return f.result(f"private: {', '.join(roles)} may read topic '{schema.BROADCAST_TOPIC}''s broadcast "
                    f"messages, not topic '{OTHER_TOPIC}', and may not insert (policy {policy})")


def _probe(ctx: Context, role: str, f: Findings) -> None:
    conn = ctx.conn
    ours, other = str(uuid.uuid4()), str(uuid.uuid4())
    claims = json.dumps({"role": role})
    try:
        with conn.transaction():
            conn.execute(f"""INSERT INTO {schema.REALTIME_MESSAGES}
                               (id, topic, extension, payload, event, private)
                             VALUES (%s, %s, 'broadcast', '{{}}', 'genisss-check', true),
                                    (%s, %s, 'broadcast', '{{}}', 'genisss-check', true)""",
                         [ours, schema.BROADCAST_TOPIC, other, OTHER_TOPIC])
            conn.execute("SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true), "
                         "set_config('request.jwt.claim.role', %s, true)", [role, claims, role])
            seen = _read(conn, schema.BROADCAST_TOPIC, [ours, other])
            seen_other = _read(conn, OTHER_TOPIC, [other])
            inserted = _insert(conn)
            raise psycopg.Rollback()
    except psycopg.errors.InsufficientPrivilege as exc:
        who = ctx.ident(role)
        if "permission denied to set role" in str(exc) or "must be member" in str(exc):
            f.warn(f"cannot probe as {role} ({reason(exc)}): run genisss check as a member of {role}")
        else:
            f.fail(f"{role} may not read {schema.REALTIME_MESSAGES} ({reason(exc)}): no browser may join "
                   "the private channel",
                   f"GRANT USAGE ON SCHEMA realtime TO {who}",
                   f"GRANT SELECT ON TABLE {schema.REALTIME_MESSAGES} TO {who}")
        return
    except psycopg.Error as exc:
        f.warn(f"cannot probe as {role}: the probe failed ({reason(exc)})")
        return
    if ours not in seen:
        f.fail(f"{role} cannot read topic '{schema.BROADCAST_TOPIC}' as Realtime asks (realtime.topic() set, "
               f"its JWT claims): policy {schema.BROADCAST_POLICY} does not let it; browsers cannot join",
               f"DROP POLICY {schema.BROADCAST_POLICY} ON {schema.REALTIME_MESSAGES}", APPLY_FIX)
    if other in seen or seen_other:
        f.fail(f"{role} can read topic '{OTHER_TOPIC}' too: a policy or privilege lets it read more than "
               "the counter's topic (the fix drops the policies that may; keep one the project needs and "
               "narrow it to its topics)", *_drops(ctx, role, ("r", "*")))
    if inserted:
        f.fail(f"{role} may INSERT into {schema.REALTIME_MESSAGES}: a browser could send on the counter's "
               "topic (the fix drops the policies that let it)", *_drops(ctx, role, ("a", "*")))


def _read(conn, topic: str, ids: list[str]) -> set[str]:
    conn.execute("SELECT set_config('realtime.topic', %s, true)", [topic])
    rows = conn.execute(f"SELECT id::text FROM {schema.REALTIME_MESSAGES} WHERE id = ANY(%s::uuid[])",
                        [ids]).fetchall()
    return {r[0] for r in rows}


def _insert(conn) -> bool:
    conn.execute("SELECT set_config('realtime.topic', %s, true)", [schema.BROADCAST_TOPIC])
    try:
        with conn.transaction():
            conn.execute(f"""INSERT INTO {schema.REALTIME_MESSAGES}
                               (topic, extension, payload, event, private)
                             VALUES (%s, 'broadcast', '{{}}', 'genisss-check', true)""",
                         [schema.BROADCAST_TOPIC])
    except psycopg.errors.InsufficientPrivilege:  # no grant, or no policy lets it: RLS says 42501 too
        return False
    return True


def _drops(ctx: Context, role: str, commands: tuple[str, ...]) -> list[str]:
    """What lets role through: the other permissive policies for it (or PUBLIC)
    on realtime.messages, or row level security switched off."""
    conn = ctx.conn
    fixes = []
    if not one(conn, "SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(%s)",
               [schema.REALTIME_MESSAGES])[0]:
        fixes.append(f"ALTER TABLE {schema.REALTIME_MESSAGES} ENABLE ROW LEVEL SECURITY")
    if one(conn, "SELECT rolbypassrls FROM pg_roles WHERE rolname = %s", [role])[0]:
        fixes.append(f"ALTER ROLE {ctx.ident(role)} NOBYPASSRLS")
    names = conn.execute("""
        SELECT polname FROM pg_policy
         WHERE polrelid = to_regclass(%s) AND polpermissive AND polcmd = ANY(%s)
           AND polname <> %s
           AND (0 = ANY(polroles) OR (SELECT oid FROM pg_roles WHERE rolname = %s) = ANY(polroles))
         ORDER BY polname""", [schema.REALTIME_MESSAGES, list(commands), schema.BROADCAST_POLICY,
                               role]).fetchall()
    fixes += [f"DROP POLICY {ctx.ident(n)} ON {schema.REALTIME_MESSAGES}" for (n,) in names]
    return fixes


# -- coalescing: the trailing send ----------------------------------------------------------------


def check_trailing(ctx: Context) -> CheckResult:
    settings = _preconditions(ctx, TRAILING_ROW)
    if isinstance(settings, CheckResult):
        return settings
    rate = settings.max_per_second
    if rate is None:
        return CheckResult(TRAILING_ROW, "pass", "no limit: every change is broadcast, nothing to send later")
    conn = ctx.conn
    f = Findings(TRAILING_ROW)
    senders = []
    if settings.cron_job:
        active = one(conn, "SELECT active FROM cron.job WHERE jobname = %s", [schema.CRON_JOB])[0]
        if active:
            senders.append(f"pg_cron job {schema.CRON_JOB}")
        else:
            f.warn(f"pg_cron job {schema.CRON_JOB} is not active",
                   "SELECT cron.alter_job(jobid, active => true) FROM cron.job "
                   f"WHERE jobname = '{schema.CRON_JOB}'")
    apps = dict(conn.execute("SELECT pid, application_name FROM pg_stat_activity WHERE pid = ANY(%s)",
                             [settings.relays]).fetchall())
    senders += [f"genisss relay (pid {pid}, {apps.get(pid) or 'no application_name'})"
                for pid in settings.relays]
    if not senders:
        cron = one(conn, "SELECT to_regprocedure(%s) IS NOT NULL", [schema.CRON_SCHEDULE])[0]
        f.fail(f"at most {rate:g} broadcasts a second, but nothing sends what the limit holds back "
               "(no pg_cron job, no genisss relay connected): the last value of a burst waits for the "
               "next change",
               APPLY_FIX if cron else RELAY)
        return f.result("")
    pending = one(conn, f"""
        SELECT extract(epoch FROM clock_timestamp() - g.updated_at)
          FROM public.global_stats g, {schema.BROADCAST_SETTINGS} s
         WHERE g.id = 'singleton' AND (s.sent_stories IS DISTINCT FROM g.total_stories
                                       OR s.sent_audio IS DISTINCT FROM g.total_audio_generations)""")
    if pending and pending[0] is not None and float(pending[0]) > 1 / rate + 1 + PENDING_GRACE:
        f.warn(f"the counter changed {float(pending[0]):.0f} s ago and has not been broadcast since, though "
               f"{', '.join(senders)} should have sent it within {1 / rate + 1:g} s: is it failing?")
    return f.result(f"at most {rate:g} broadcasts a second; the last value is sent by {', '.join(senders)}")
