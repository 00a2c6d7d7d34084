"""Baseline for one-shot commands: import psycopg, connect, run one query, print the row.

usage: python query.py DSN SQL
"""

import sys

import psycopg

with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    print(conn.execute(sys.argv[2]).fetchone())
