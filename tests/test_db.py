"""`genisss db url --reveal`."""

import json

SECRET = "Pa55-w0rd-S3cret"


def test_reveal_prints_the_password_and_only_when_asked(genisss):
    dsn = f"postgresql://u:{SECRET}@db.example:5432/app?sslmode=require"
    r = genisss("db", "url", "--reveal", dsn=dsn)
    assert r.code == 0 and r.out == dsn + "\n" and r.err == ""
    r = genisss("db", "url", "--reveal", "--json", dsn=dsn)
    assert r.code == 0
    assert json.loads(r.out) == {"url": dsn, "source": "--database-url", "embedded": False,
                                 "transaction_pooler": False}
    for args in (["db", "url"], ["db", "url", "--json"]):
        r = genisss(*args, dsn=dsn)
        assert r.code == 0 and SECRET not in r.output and ":***@db.example" in r.out
