"""Read an Ecto migration module (Elixir) far enough to get the SQL it runs:
the strings passed to `execute` (double-quoted, heredocs and ~S/~s sigils, with
Elixir's own escapes), and Ecto's table DSL (`create table(:t) do add ...
end`, `alter table`, `create index`, `drop_if_exists table`) written out as
the SQL Ecto's PostgreSQL adapter sends. Anything else is a ParseError, never
a guess. Used by tests/realtime_upstream.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PREFIX = "realtime"  # Realtime runs Ecto.Migrator with prefix: "realtime"


class ParseError(Exception):
    pass


# -- Elixir tokens ---------------------------------------------------------------------------


@dataclass
class Tok:
    kind: str  # str | atom | key | word | num | op | nl
    value: object
    line: int


_UNESCAPE = {"0": "\0", "a": "\a", "b": "\b", "d": "\x7f", "e": "\x1b", "f": "\f", "n": "\n",
             "r": "\r", "s": " ", "t": "\t", "v": "\v", "\n": ""}


def _unescape(text: str) -> str:
    """Elixir's escapes in a double-quoted string or heredoc: a known letter, \\xHH,
    \\uHHHH, a backslash-newline (removed); any other character stands for itself."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 == len(text):
            out.append(c)
            i += 1
            continue
        e = text[i + 1]
        if e == "x":
            m = re.match(r"\{([0-9A-Fa-f]+)\}|([0-9A-Fa-f]{1,2})", text[i + 2:])
            if not m:
                raise ParseError(f"bad \\x escape: {text[i:i + 6]!r}")
            out.append(chr(int(m.group(1) or m.group(2), 16)))
            i += 2 + m.end()
            continue
        if e == "u":
            m = re.match(r"\{([0-9A-Fa-f]+)\}|([0-9A-Fa-f]{4})", text[i + 2:])
            if not m:
                raise ParseError(f"bad \\u escape: {text[i:i + 8]!r}")
            out.append(chr(int(m.group(1) or m.group(2), 16)))
            i += 2 + m.end()
            continue
        out.append(_UNESCAPE.get(e, e))
        i += 2
    return "".join(out)


def _heredoc(src: str, start: int, raw: bool) -> tuple[str, int]:
    """The heredoc whose opening quotes end at start; its value and the index after it."""
    nl = src.find("\n", start)
    if nl < 0 or src[start:nl].strip():
        raise ParseError("a heredoc's opening quotes must end their line")
    pos = nl + 1
    while True:
        end = src.find("\n", pos)
        line = src[pos:] if end < 0 else src[pos:end]
        if line.strip() == '"""' or (line.lstrip().startswith('"""') and not line.strip()[3:].strip(")")):
            indent = len(line) - len(line.lstrip())
            body = src[nl + 1:pos]
            closing = pos + indent + 3
            break
        if end < 0:
            raise ParseError("heredoc without its closing quotes")
        pos = end + 1
    lines = body.split("\n")[:-1]  # the body ends with the newline before the closing quotes
    stripped = [ln[indent:] if ln[:indent].strip() == "" else ln.lstrip() for ln in lines]
    text = "\n".join(stripped) + ("\n" if lines else "")
    return (text if raw else _unescape(text)), closing


def _quoted(src: str, start: int, raw: bool) -> tuple[str, int]:
    i = start
    while i < len(src):
        if src[i] == "\\" and not raw:
            i += 2
            continue
        if src[i] == '"':
            text = src[start:i]
            return (text if raw else _unescape(text)), i + 1
        i += 1
    raise ParseError("string without its closing quote")


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        line = src.count("\n", 0, i) + 1
        if c == "\n":
            toks.append(Tok("nl", None, line))
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            while i < n and src[i] != "\n":
                i += 1
        elif src.startswith('"""', i):
            value, i = _heredoc(src, i + 3, raw=False)
            toks.append(Tok("str", value, line))
        elif c == '"':
            value, i = _quoted(src, i + 1, raw=False)
            toks.append(Tok("str", value, line))
        elif c == "~" and i + 2 < n and src[i + 1] in "sS":
            raw = src[i + 1] == "S"
            if src.startswith('"""', i + 2):
                value, i = _heredoc(src, i + 5, raw)
            elif src[i + 2] == '"':
                value, i = _quoted(src, i + 3, raw)
            else:
                raise ParseError(f"line {line}: a ~{src[i + 1]} sigil with delimiter {src[i + 2]!r}")
            toks.append(Tok("str", value, line))
        elif c == "~":
            raise ParseError(f"line {line}: sigil ~{src[i + 1:i + 2]}")
        elif c == ":" and i + 1 < n and (src[i + 1].isalpha() or src[i + 1] == "_"):
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_?!]*").match(src, i + 1)
            toks.append(Tok("atom", m.group(), line))
            i = m.end()
        elif c.isalpha() or c == "_" or c == "@":
            m = re.compile(r"@?[A-Za-z_][A-Za-z0-9_?!]*").match(src, i)
            word, i = m.group(), m.end()
            if i < n and src[i] == ":" and (i + 1 == n or src[i + 1] in " \t\n"):
                toks.append(Tok("key", word, line))
                i += 1
            else:
                toks.append(Tok("word", word, line))
        elif c.isdigit():
            m = re.compile(r"[0-9][0-9_]*").match(src, i)
            toks.append(Tok("num", int(m.group().replace("_", "")), line))
            i = m.end()
        elif src.startswith("->", i) or src.startswith("<>", i) or src.startswith("|>", i):
            toks.append(Tok("op", src[i:i + 2], line))
            i += 2
        else:
            toks.append(Tok("op", c, line))
            i += 1
    return toks


# -- Elixir expressions ----------------------------------------------------------------------


@dataclass
class Atom:
    name: str


@dataclass
class Call:
    name: str
    args: list = field(default_factory=list)
    opts: dict = field(default_factory=dict)
    block: list | None = None  # the statements of a do ... end


class Parser:
    def __init__(self, toks: list[Tok]):
        self.toks, self.i = toks, 0

    def peek(self, skip_nl: bool = False) -> Tok | None:
        j = self.i
        while skip_nl and j < len(self.toks) and self.toks[j].kind == "nl":
            j += 1
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end of file")
        self.i += 1
        return tok

    def skip_nl(self) -> None:
        while self.peek() is not None and self.peek().kind == "nl":
            self.i += 1

    def is_op(self, value: str, skip_nl: bool = False) -> bool:
        tok = self.peek(skip_nl)
        return tok is not None and tok.kind == "op" and tok.value == value

    def expect_op(self, value: str) -> None:
        self.skip_nl()
        tok = self.next()
        if tok.kind != "op" or tok.value != value:
            raise ParseError(f"line {tok.line}: expected {value!r}, found {tok.value!r}")

    def expr(self):
        self.skip_nl()
        tok = self.next()
        if tok.kind == "str":
            value = tok.value
            while self.is_op("<>"):  # "a" <> "b"
                self.next()
                self.skip_nl()
                right = self.next()
                if right.kind != "str":
                    raise ParseError(f"line {right.line}: <> with something other than a string")
                value += right.value
            return value
        if tok.kind == "atom":
            return Atom(tok.value)
        if tok.kind == "num":
            return tok.value
        if tok.kind == "word" and tok.value in ("true", "false", "nil"):
            return {"true": True, "false": False, "nil": None}[tok.value]
        if tok.kind == "op" and tok.value == "[":
            return self.sequence("]", allow_keys=True)
        if tok.kind == "op" and tok.value == "{":
            return tuple(self.sequence("}"))
        if tok.kind == "word" and self.is_op("("):
            self.next()
            return self.call_rest(tok.value, parens=True)
        raise ParseError(f"line {tok.line}: cannot read {tok.value!r} here")

    def sequence(self, close: str, allow_keys: bool = False) -> list:
        items: list = []
        while True:
            self.skip_nl()
            if self.is_op(close):
                self.next()
                return items
            tok = self.peek()
            if allow_keys and tok.kind == "key":
                self.next()
                items.append((tok.value, self.expr()))
            else:
                items.append(self.expr())
            self.skip_nl()
            if self.is_op(","):
                self.next()
            elif not self.is_op(close):
                bad = self.peek()
                raise ParseError(f"line {bad.line}: expected ',' or {close!r}, found {bad.value!r}")

    def call_rest(self, name: str, parens: bool, take_block: bool = False) -> Call:
        """The arguments of name(...) (after the parenthesis) or of name a, b
        (to the end of the line), then, for a statement, its do ... end block."""
        call = Call(name)
        while True:
            if parens:
                self.skip_nl()
                if self.is_op(")"):
                    self.next()
                    break
            else:
                tok = self.peek()
                if tok is None or tok.kind == "nl" or (tok.kind == "word" and tok.value in ("do", "end")):
                    break
            tok = self.peek()
            if tok.kind == "key":
                self.next()
                call.opts[tok.value] = self.expr()
            else:
                if call.opts:
                    raise ParseError(f"line {tok.line}: an argument after keyword options")
                call.args.append(self.expr())
            if parens:
                self.skip_nl()
            if self.is_op(","):
                self.next()
                self.skip_nl()  # a line may end after a comma
            elif parens:
                self.expect_op(")")
                break
            else:
                break
        tok = self.peek()
        if take_block and tok is not None and tok.kind == "word" and tok.value == "do":
            self.next()
            call.block = self.block()
        return call

    def statement(self):
        """One statement of a do block: a call (with or without parentheses), or a
        bare value (a string, which Ecto ignores)."""
        tok = self.peek()
        if tok.kind == "word" and tok.value not in ("true", "false", "nil"):
            self.next()
            if self.is_op("("):
                self.next()
                first = self.call_rest(tok.value, parens=True, take_block=True)
                nxt = self.peek()
                if nxt is not None and nxt.kind not in ("nl",) and not (
                        nxt.kind == "word" and nxt.value == "end"):
                    raise ParseError(f"line {nxt.line}: unexpected {nxt.value!r} after {tok.value}(...)")
                return first
            return self.call_rest(tok.value, parens=False, take_block=True)
        return self.expr()

    def block(self) -> list:
        """Statements up to the matching `end`."""
        out = []
        while True:
            self.skip_nl()
            tok = self.peek()
            if tok is None:
                raise ParseError("a do block without its end")
            if tok.kind == "word" and tok.value == "end":
                self.next()
                return out
            out.append(self.statement())


def migration_body(src: str, name: str) -> list:
    """The statements of `def up` (or else `def change`) of one migration module."""
    toks = tokenize(src)
    bodies = {}
    for k, tok in enumerate(toks):
        if (tok.kind == "word" and tok.value == "def" and k + 2 < len(toks)
                and toks[k + 1].kind == "word" and toks[k + 2].kind == "word" and toks[k + 2].value == "do"):
            p = Parser(toks)
            p.i = k + 3
            bodies[toks[k + 1].value] = p.block()
    for kind in ("up", "change"):
        if kind in bodies:
            return bodies[kind]
    raise ParseError(f"{name}: neither def up nor def change")


# -- Ecto's DSL as SQL -----------------------------------------------------------------------

TYPES = {"string": "varchar(255)", "text": "text", "boolean": "boolean", "uuid": "uuid", "map": "jsonb",
         "utc_datetime": "timestamp(0)", "naive_datetime": "timestamp(0)", "utc_datetime_usec": "timestamp",
         "naive_datetime_usec": "timestamp", "bigint": "bigint", "integer": "integer", "binary": "bytea",
         "bigserial": "bigserial", "serial": "serial", "date": "date", "float": "float8"}


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _name(value) -> str:
    if isinstance(value, Atom):
        return value.name
    if isinstance(value, str):
        return value
    raise ParseError(f"expected a name, found {value!r}")


def _table(call: Call) -> tuple[str, str]:
    if call.name != "table" or len(call.args) != 1:
        raise ParseError(f"expected table(:name), found {call.name}(...)")
    unknown = set(call.opts) - {"prefix", "primary_key"}
    if unknown:
        raise ParseError(f"table option(s) {sorted(unknown)}")
    return _name(call.args[0]), f'{q(call.opts.get("prefix", PREFIX))}.{q(_name(call.args[0]))}'


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, Call) and value.name == "fragment" and len(value.args) == 1:
        return value.args[0]
    raise ParseError(f"cannot write the default {value!r}")


def _column(table: str, stmt: Call, if_not_exists: bool = False) -> str:
    if len(stmt.args) != 2:
        raise ParseError(f"add with {len(stmt.args)} arguments")
    col, kind = _name(stmt.args[0]), stmt.args[1]
    refs = ""
    if isinstance(kind, Call) and kind.name == "references":
        ref_table = _name(kind.args[0])
        ref_type = kind.opts.get("type", Atom("bigint"))
        sqltype = TYPES.get(_name(ref_type))
        actions = {"delete_all": " ON DELETE CASCADE", "nilify_all": " ON DELETE SET NULL",
                   "restrict": " ON DELETE RESTRICT", "nothing": ""}
        on_delete = actions.get(_name(kind.opts.get("on_delete", Atom("nothing"))))
        if on_delete is None or set(kind.opts) - {"on_delete", "type"}:
            raise ParseError(f"references options {kind.opts}")
        refs = (f" CONSTRAINT {q(f'{table}_{col}_fkey')} REFERENCES "
                f"{q(PREFIX)}.{q(ref_table)}({q('id')}){on_delete}")
    else:
        sqltype = TYPES.get(_name(kind))
    if sqltype is None:
        raise ParseError(f"the Ecto type {kind!r}")
    unknown = set(stmt.opts) - {"null", "default", "primary_key"}
    if unknown:
        raise ParseError(f"column option(s) {sorted(unknown)}")
    sql = f"{'IF NOT EXISTS ' if if_not_exists else ''}{q(col)} {sqltype}{refs}"
    if "default" in stmt.opts:
        sql += f" DEFAULT {_literal(stmt.opts['default'])}"
    if stmt.opts.get("null") is False:
        sql += " NOT NULL"
    if stmt.opts.get("primary_key"):
        sql += " PRIMARY KEY"
    return sql


def _create_table(call: Call, if_not_exists: bool) -> str:
    name, table = _table(call.args[0])
    cols = []
    if call.args[0].opts.get("primary_key", True):
        cols.append(f"{q('id')} bigserial")
    for stmt in call.block or []:
        if not isinstance(stmt, Call):
            raise ParseError(f"in create table: {stmt!r}")
        if stmt.name == "add":
            cols.append(_column(name, stmt))
        elif stmt.name == "timestamps" and not stmt.args and not stmt.opts:
            cols += [f"{q('inserted_at')} timestamp(0) NOT NULL", f"{q('updated_at')} timestamp(0) NOT NULL"]
        else:
            raise ParseError(f"in create table: {stmt.name}")
    if call.args[0].opts.get("primary_key", True):
        cols.append(f"PRIMARY KEY ({q('id')})")
    return f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{table} ({', '.join(cols)})"


def _alter_table(call: Call) -> str:
    name, table = _table(call.args[0])
    changes = []
    for stmt in call.block or []:
        if not isinstance(stmt, Call):
            raise ParseError(f"in alter table: {stmt!r}")
        if stmt.name in ("add", "add_if_not_exists"):
            changes.append("ADD COLUMN " + _column(name, stmt, stmt.name == "add_if_not_exists"))
        elif stmt.name in ("remove", "remove_if_exists") and len(stmt.args) >= 1:
            exists = " IF EXISTS" if stmt.name == "remove_if_exists" else ""
            changes.append(f"DROP COLUMN{exists} {q(_name(stmt.args[0]))}")
        elif stmt.name == "modify" and len(stmt.args) == 2:
            col, sqltype = q(_name(stmt.args[0])), TYPES.get(_name(stmt.args[1]))
            if sqltype is None or set(stmt.opts) - {"null", "default"}:
                raise ParseError(f"modify {stmt.args} {stmt.opts}")
            changes.append(f"ALTER COLUMN {col} TYPE {sqltype}")
            if "default" in stmt.opts:
                changes.append(f"ALTER COLUMN {col} SET DEFAULT {_literal(stmt.opts['default'])}")
            if "null" in stmt.opts:
                changes.append(f"ALTER COLUMN {col} {'DROP' if stmt.opts['null'] else 'SET'} NOT NULL")
        else:
            raise ParseError(f"in alter table: {stmt.name}")
    return f"ALTER TABLE {table} {', '.join(changes)}"


def _index(call: Call, if_not_exists: bool) -> str:
    if len(call.args) != 2:
        raise ParseError(f"{call.name} with {len(call.args)} arguments")
    table = _name(call.args[0])
    cols = call.args[1] if isinstance(call.args[1], list) else [call.args[1]]
    names, exprs = [], []
    for col in cols:
        if (isinstance(col, tuple) and len(col) == 2 and isinstance(col[0], Atom)
                and col[0].name in ("asc", "desc")):
            names.append(_name(col[1]))
            exprs.append(f"{q(_name(col[1]))} {col[0].name.upper()}")
        elif isinstance(col, Atom):
            names.append(col.name)
            exprs.append(q(col.name))
        else:
            raise ParseError(f"index column {col!r}")
    unknown = set(call.opts) - {"prefix", "where", "name", "unique"}
    if unknown:
        raise ParseError(f"index option(s) {sorted(unknown)}")
    name = call.opts.get("name")
    if not name:
        name = re.sub(r"[^\w]", "_", "_".join([table, *names, "index"])).replace("__", "_")
    name = _name(name)
    unique = call.name == "unique_index" or call.opts.get("unique")
    where = f" WHERE {call.opts['where']}" if "where" in call.opts else ""
    return (f"CREATE {'UNIQUE ' if unique else ''}INDEX {'IF NOT EXISTS ' if if_not_exists else ''}{q(name)} "
            f"ON {q(call.opts.get('prefix', PREFIX))}.{q(table)} ({', '.join(exprs)}){where}")


def statement_sql(stmt) -> str | None:
    """The SQL of one statement of a migration's body; None for a bare value."""
    if isinstance(stmt, str):
        return None  # a string as a statement is a value Ecto ignores
    if not isinstance(stmt, Call):
        raise ParseError(f"a statement {stmt!r}")
    if stmt.name == "execute":
        if not stmt.args or not isinstance(stmt.args[0], str) or stmt.opts:
            raise ParseError("execute with something other than a SQL string")
        return stmt.args[0]  # execute(up, down): the first is the up direction
    if stmt.name in ("create", "create_if_not_exists") and len(stmt.args) == 1:
        target, exists = stmt.args[0], stmt.name == "create_if_not_exists"
        if isinstance(target, Call) and target.name == "table":
            target.block = stmt.block
            return _create_table(Call("create", [target], {}, stmt.block), exists)
        if isinstance(target, Call) and target.name in ("index", "unique_index") and not stmt.block:
            return _index(target, exists)
    if stmt.name == "alter" and len(stmt.args) == 1 and isinstance(stmt.args[0], Call):
        return _alter_table(Call("alter", stmt.args, {}, stmt.block))
    if stmt.name in ("drop", "drop_if_exists") and len(stmt.args) == 1 and isinstance(stmt.args[0], Call):
        _, table = _table(stmt.args[0])
        mode = stmt.opts.get("mode")
        cascade = " CASCADE" if isinstance(mode, Atom) and mode.name == "cascade" else ""
        if set(stmt.opts) - {"mode"} or stmt.block:
            raise ParseError(f"drop options {stmt.opts}")
        return f"DROP TABLE {'IF EXISTS ' if stmt.name == 'drop_if_exists' else ''}{table}{cascade}"
    raise ParseError(f"the statement {stmt.name}(...)")
