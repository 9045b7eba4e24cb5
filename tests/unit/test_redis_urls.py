"""Sentinel URLs: both spellings parse alike, kombu gets its own form, clients follow Sentinel."""

import re

import pytest
from redis.sentinel import SentinelConnectionPool

from backbeat.config.celery import celery_config
from backbeat.config.redis_urls import (
    SentinelURL,
    broker_url_and_options,
    is_sentinel,
    parse_sentinel,
)
from backbeat.config.settings import Settings
from backbeat.workers.redis_conn import client

THREE = (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379))


@pytest.mark.parametrize("url", [
    "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,10.0.0.3/2?master_name=bb",
    "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/2?master_name=bb",
    "sentinel://10.0.0.1:26379/2?master_name=bb;sentinel://10.0.0.2:26380;sentinel://10.0.0.3",
    "sentinel://10.0.0.1:26379,10.0.0.2:26380;redis+sentinel://10.0.0.3:26379/2?master_name=bb",
])
def test_both_spellings_give_the_same_sentinels_db_and_master(url):
    assert is_sentinel(url)
    assert parse_sentinel(url) == SentinelURL(sentinels=THREE, master_name="bb", db=2)


def test_defaults_master_name_db_and_port():
    parsed = parse_sentinel("redis+sentinel://sentinel-a,sentinel-b")
    assert parsed.sentinels == (("sentinel-a", 26379), ("sentinel-b", 26379))
    assert (parsed.master_name, parsed.db, parsed.password) == ("mymaster", 0, None)


def test_credentials_are_the_primarys_and_sentinel_password_is_separate():
    parsed = parse_sentinel("redis+sentinel://app:p%40ss%2Fw@h1:1,h2:2/0"
                            "?master_name=m&sentinel_password=sent")
    assert (parsed.username, parsed.password, parsed.sentinel_password) == ("app", "p@ss/w",
                                                                           "sent")
    assert "p@ss" not in repr(parsed) and "sent" not in repr(parsed)


def test_ipv6_sentinels():
    parsed = parse_sentinel("redis+sentinel://[::1]:26379,[fe80::2]/0")
    assert parsed.sentinels == (("::1", 26379), ("fe80::2", 26379))
    assert parsed.kombu_url() == "sentinel://[::1]:26379/0;sentinel://[fe80::2]:26379/0"


@pytest.mark.parametrize("url, message", [
    ("redis+sentinel:///0", "no sentinel host"),
    ("redis+sentinel://h1:99999", "bad sentinel port"),
    ("redis+sentinel://h1:x", "bad sentinel port"),
    ("redis+sentinel://h1/zero", "db must be a number"),
    ("redis+sentinel://h1?service_name=m", "unknown parameter 'service_name'"),
    ("sentinel://h1/0?master_name=a;sentinel://h2/0?master_name=b", "master_name is given twice"),
    ("sentinel://h1/0;sentinel://h2/1", "db is given twice"),
    ("sentinel://h1;redis://h2", "must start with redis+sentinel:// or sentinel://"),
])
def test_malformed_urls_are_refused_with_a_reason(url, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_sentinel(url)


def test_errors_never_show_passwords():
    with pytest.raises(ValueError) as info:
        parse_sentinel("redis+sentinel://:hunter2@h1/x?sentinel_password=swordfish")
    assert "hunter2" not in str(info.value) and "swordfish" not in str(info.value)


def test_plain_urls_are_not_sentinel_urls_and_pass_to_kombu_unchanged():
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///tmp/r.sock"):
        assert not is_sentinel(url)
        assert broker_url_and_options(url) == (url, {})


def test_broker_gets_kombus_form_with_credentials_and_db_on_every_sentinel():
    url, options = broker_url_and_options(
        "redis+sentinel://:pw@h1:26379,h2:26380/3?master_name=bb&sentinel_password=sp")
    assert url == "sentinel://:pw@h1:26379/3;sentinel://:pw@h2:26380/3"
    assert options["master_name"] == "bb"
    assert options["sentinel_kwargs"]["password"] == "sp"


def test_celery_config_carries_master_name_beside_backbeats_own_options():
    settings = Settings.from_env({
        "BACKBEAT_REDIS_URL": "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/0?master_name=bb",
    })
    conf = celery_config(settings)
    assert conf["broker_url"] == "sentinel://127.0.0.1:26379/0;sentinel://127.0.0.1:26380/0"
    transport = conf["broker_transport_options"]
    assert transport["master_name"] == "bb"
    assert transport["global_keyprefix"] == "bb:celery:" and transport["visibility_timeout"]


def test_kombu_reads_the_translated_url_as_a_sentinel_transport():
    from kombu import Connection

    url, options = broker_url_and_options("redis+sentinel://127.0.0.1:1,127.0.0.1:2/4?master_name=x")
    conn = Connection(url, transport_options=options)
    assert conn.transport_cls == "sentinel" and conn.virtual_host == "4"
    assert conn.alt == ["sentinel://127.0.0.1:1/4", "sentinel://127.0.0.1:2/4"]


def test_a_bad_sentinel_url_fails_at_startup_naming_the_variable():
    with pytest.raises(ValueError, match="BACKBEAT_BROKER_URL: .*db must be a number"):
        Settings.from_env({"BACKBEAT_BROKER_URL": "sentinel://h1/x"})


def test_store_client_for_a_sentinel_url_asks_the_sentinels_for_the_primary():
    """No network needed: the client is built lazily and only connects on its first command."""
    redis = client("redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/5?master_name=bb")
    pool = redis.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "bb"
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["decode_responses"]) == (5, "pw", True)
    assert kwargs["socket_keepalive"] and kwargs["retry_on_timeout"]
    assert kwargs["health_check_interval"] == 30 and kwargs["socket_connect_timeout"] == 5
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert all(s.connection_pool.connection_kwargs.get("password") is None for s in sentinels)


def test_store_client_for_a_plain_url_is_unchanged():
    redis = client("redis://127.0.0.1:1/2")
    assert not isinstance(redis.connection_pool, SentinelConnectionPool)
    assert redis.connection_pool.connection_kwargs["db"] == 2
