"""Job types are listed once (provider/profiles.py, beside their endpoints): every table that
pairs a type with something of its own covers exactly that list."""

from backbeat.config.settings import DEFAULTS
from backbeat.devstack import demo
from backbeat.provider.params import PARAMS_SCHEMAS
from backbeat.provider.profiles import CREATE_PATHS, ENDPOINTS, JOB_TYPES
from backbeat.simulator import validation
from backbeat.simulator.server import CREATE_ROUTES


def test_every_table_keyed_by_job_type_covers_exactly_the_job_types():
    assert JOB_TYPES == tuple(CREATE_PATHS) and set(CREATE_PATHS.items()) <= set(ENDPOINTS.items())
    for table in (PARAMS_SCHEMAS, validation.REQUIRED, demo._TYPE_PARAMS):
        assert sorted(table) == sorted(JOB_TYPES), table
    assert sorted(CREATE_ROUTES.values()) == sorted(JOB_TYPES)
    assert sorted(dict(DEFAULTS.deadlines_s)) == sorted(JOB_TYPES)
