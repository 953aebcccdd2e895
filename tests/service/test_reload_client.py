"""``recsys service reload`` against a real ``bentoml serve``: the admin token, what is served afterwards, and
the one-line errors of a wrong token, a wrong expectation and a service that does not answer."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from recsys.settings import ServingSettings
from recsys.stages.base import StageError
from recsys.stages.service import ReloadParams, reload_service
from tests.receivers import free_port
from tests.service.conftest import ADMIN_TOKEN, BentoServerFactory


@pytest.mark.timeout(300)
def test_reload_reports_what_is_served_and_names_every_failure(bento_server: BentoServerFactory) -> None:
    settings = ServingSettings(admin_token=SecretStr(ADMIN_TOKEN))
    with bento_server() as server:
        result = reload_service(settings, ReloadParams(url=server.base))
        assert "champion" in result.versions and result.url == server.base

        with pytest.raises(StageError, match="HTTP 401: missing or wrong bearer token"):
            reload_service(ServingSettings(admin_token=SecretStr("wrong")), ReloadParams(url=server.base))
        with pytest.raises(StageError, match=r"serves champion v.* after the reload, not v99"):
            reload_service(settings, ReloadParams(url=server.base, expect_version=99))
    with pytest.raises(StageError, match="did not reload after 2 attempt"):
        reload_service(settings, ReloadParams(url=f"http://127.0.0.1:{free_port()}", attempts=2, timeout=1))
    with pytest.raises(StageError, match="RECSYS_ADMIN_TOKEN is not set"):
        reload_service(ServingSettings(admin_token=None), ReloadParams(url="http://127.0.0.1:1"))
