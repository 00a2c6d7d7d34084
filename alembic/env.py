"""Alembic environment, shared by genisss and by plain `alembic` in this folder.

genisss hands over an open connection (config.attributes["connection"]); plain
`alembic` resolves the database the way genisss does.
"""

from alembic import context
from genisss_cli.core import migrate

config = context.config
if config.config_file_name:  # plain `alembic`: log the way alembic.ini says
    from logging.config import fileConfig

    fileConfig(config.config_file_name)

if context.is_offline_mode():
    migrate.run_offline(context, config)
else:
    migrate.run_online(context, config)
