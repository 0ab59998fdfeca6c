"""Submit a compiled pipeline to a Kubeflow Pipelines (KFP 2) cluster, once or on a schedule.

A thin, explicit layer over `kfp.Client` that

* reads the connection from the environment (`KFP_HOST`, `KFP_TOKEN` or `KFP_TOKEN_FILE`, `KFP_NAMESPACE`),
  so a laptop, a CI job and a pod configure it the same way;
* keeps one pipeline per name: each upload becomes a new *version* of it, and every run names the exact
  version it ran, so the UI shows what ran when;
* refuses to add a second active schedule under a name that already has one, because two copies of a
  nightly job would train twice and race for the same outputs.

Tokens are passed to the client and never printed, logged or shown in a `repr`.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kfp
import urllib3
from kfp_server_api.exceptions import ApiException

from nlpstd.errors import NlpstdError

HOST_ENV = "KFP_HOST"
TOKEN_ENV = "KFP_TOKEN"
TOKEN_FILE_ENV = "KFP_TOKEN_FILE"
NAMESPACE_ENV = "KFP_NAMESPACE"


@dataclass(frozen=True)
class Connection:
    """Where the KFP API is and how to authenticate to it.

    `namespace` is the Kubeflow profile namespace in a multi-user deployment; leave it None on a
    single-user one. The token is left out of the `repr` so that a logged connection does not leak it.
    """

    host: str
    token: str | None = field(default=None, repr=False)
    namespace: str | None = None


def connection_from_env(host: str | None = None, namespace: str | None = None) -> Connection:
    """Build a `Connection` from the arguments, falling back on `KFP_HOST` and `KFP_NAMESPACE`.

    The bearer token comes from `KFP_TOKEN` or else from the file named by `KFP_TOKEN_FILE` (a mounted
    secret or a projected service-account token), so it never has to appear on a command line.
    """
    host = host or os.environ.get(HOST_ENV) or None
    if not host:
        raise NlpstdError(
            f"no KFP host: pass one or set {HOST_ENV} (e.g. {HOST_ENV}=https://kubeflow.example.com/pipeline)"
        )
    if not host.startswith(("http://", "https://")):
        raise NlpstdError(f"KFP host {host!r} must start with http:// or https://")
    return Connection(
        host=host.rstrip("/"),
        token=_token_from_env(),
        namespace=namespace or os.environ.get(NAMESPACE_ENV) or None,
    )


def _token_from_env() -> str | None:
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    path = os.environ.get(TOKEN_FILE_ENV)
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise NlpstdError(f"{TOKEN_FILE_ENV}={path}: cannot read the token file ({error.strerror or error})") from None
    if not token:
        raise NlpstdError(f"{TOKEN_FILE_ENV}={path}: the token file is empty")
    return token


def client(conn: Connection) -> kfp.Client:
    """A `kfp.Client` for `conn`.

    The namespace is passed as given, None included: kfp's own default ("kubeflow") would make the client
    fall back on a namespace saved in ~/.config/kfp/context.json by the kfp CLI. With no namespace the
    client calls the API's healthz endpoint while it is built.
    """
    with warnings.catch_warnings():
        # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later": noise on every call.
        warnings.filterwarnings("ignore", message="This client only works", category=FutureWarning)
        return kfp.Client(host=conn.host, existing_token=conn.token, namespace=conn.namespace)  # type: ignore[arg-type]


def upload(
    client: kfp.Client, package: Path, pipeline_name: str, version_name: str, *, namespace: str | None = None
) -> tuple[str, str]:
    """Upload `package` as version `version_name` of pipeline `pipeline_name`; return (pipeline_id, version_id).

    The pipeline is looked up by name first, so repeated uploads add versions to one pipeline instead of
    failing on its name. A new pipeline gets, from the KFP server, a first version named after the
    pipeline; `version_name` is then uploaded as its second version, so the returned version is always
    the one named `version_name`. Versions are immutable: reusing a version name is an error.

    `namespace` makes a new pipeline private to that namespace; shared (namespace-less) pipelines need
    write access to the KFP system namespace on a multi-user deployment.
    """
    pipeline_id = _pipeline_id(client, pipeline_name, namespace)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=pipeline_name, namespace=namespace).pipeline_id
        if version_name == pipeline_name:
            return pipeline_id, _only_version_id(client, pipeline_id)
    try:
        version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id)
    except ApiException as error:
        if error.status == 409:
            raise NlpstdError(
                f"pipeline {pipeline_name!r} already has a version named {version_name!r}; "
                "versions are immutable, so upload under a new version name"
            ) from None
        raise
    return pipeline_id, version.pipeline_version_id


def submit(
    conn: Connection,
    package: Path,
    *,
    pipeline_name: str,
    version_name: str,
    experiment: str,
    run_name: str,
    params: dict[str, Any],
) -> str:
    """Upload `package` (see `upload`) and start one run of that version in `experiment`; return the run's URL.

    The experiment is created when missing. Task caching is left as compiled into the package.
    """
    _check_package(package)
    with _api_errors(conn.host):
        kfp_client = client(conn)
        experiment_id = kfp_client.create_experiment(experiment, namespace=conn.namespace).experiment_id
        pipeline_id, version_id = upload(kfp_client, package, pipeline_name, version_name, namespace=conn.namespace)
        run = kfp_client.run_pipeline(
            experiment_id=experiment_id,
            job_name=run_name,
            params=params,
            pipeline_id=pipeline_id,
            version_id=version_id,
        )
    return f"{conn.host}/#/runs/details/{run.run_id}"


def schedule(
    conn: Connection,
    package: Path,
    *,
    pipeline_name: str,
    version_name: str,
    experiment: str,
    job_name: str,
    cron: str,
    params: dict[str, Any],
) -> str:
    """Upload `package` (see `upload`) and schedule it in `experiment` on `cron`; return the recurring run's URL.

    `cron` has six fields, seconds first (KFP uses robfig/cron): "0 0 3 * * *" is every day at 03:00.
    At most one run at a time, and no catch-up of runs missed while the schedule was off. An enabled
    recurring run named `job_name` in the experiment is an error, as KFP would accept a duplicate; a
    disabled one may stay.
    """
    _check_package(package)
    _check_cron(cron)
    with _api_errors(conn.host):
        kfp_client = client(conn)
        experiment_id = kfp_client.create_experiment(experiment, namespace=conn.namespace).experiment_id
        _refuse_second_schedule(kfp_client, conn.host, experiment, experiment_id, job_name)
        pipeline_id, version_id = upload(kfp_client, package, pipeline_name, version_name, namespace=conn.namespace)
        recurring_run = kfp_client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=job_name,
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            params=params,
            pipeline_id=pipeline_id,
            version_id=version_id,
            enabled=True,
        )
    return f"{conn.host}/#/recurringrun/details/{recurring_run.recurring_run_id}"


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _pipeline_id(client: kfp.Client, name: str, namespace: str | None) -> str | None:
    found = client.list_pipelines(filter=_name_filter(name), namespace=namespace).pipelines or []
    ids = [p.pipeline_id for p in found if p.display_name == name]
    if len(ids) > 1:
        raise NlpstdError(f"{len(ids)} pipelines are named {name!r}; delete the extra ones or choose another name")
    return ids[0] if ids else None


def _only_version_id(client: kfp.Client, pipeline_id: str) -> str:
    versions = client.list_pipeline_versions(pipeline_id).pipeline_versions or []
    if len(versions) != 1:
        raise NlpstdError(f"pipeline {pipeline_id} was just created but has {len(versions)} versions, expected 1")
    return versions[0].pipeline_version_id


def _refuse_second_schedule(client: kfp.Client, host: str, experiment: str, experiment_id: str, job_name: str) -> None:
    page_token = ""
    while True:
        page = client.list_recurring_runs(
            experiment_id=experiment_id, filter=_name_filter(job_name), page_size=100, page_token=page_token
        )
        for found in page.recurring_runs or []:
            disabled = found.mode == "DISABLE" or found.status == "DISABLED"
            if found.display_name == job_name and not disabled:
                raise NlpstdError(
                    f"experiment {experiment!r} already has an enabled recurring run named {job_name!r} "
                    f"({host}/#/recurringrun/details/{found.recurring_run_id}); disable or delete it first "
                    f"(`kfp recurring-run disable {found.recurring_run_id}`), or choose another job name"
                )
        page_token = page.next_page_token or ""
        if not page_token:
            return


def _check_package(package: Path) -> None:
    if not Path(package).is_file():
        raise NlpstdError(f"{package}: no compiled pipeline there; compile the pipeline first")


def _check_cron(cron: str) -> None:
    if len(cron.split()) != 6:
        raise NlpstdError(
            f"cron {cron!r} has {len(cron.split())} fields; KFP wants 6, seconds first "
            "(e.g. '0 0 3 * * *' for every day at 03:00)"
        )


@contextlib.contextmanager
def _api_errors(host: str) -> Iterator[None]:
    """Turn API and network failures into one-line `NlpstdError`s that say what to check."""
    try:
        yield
    except ApiException as error:
        hint = f"; check {TOKEN_ENV} or {TOKEN_FILE_ENV}" if error.status in (401, 403) else ""
        raise NlpstdError(
            f"KFP API at {host} answered {error.status} {error.reason}: {_server_message(error.body)}{hint}"
        ) from None
    except urllib3.exceptions.HTTPError as error:
        raise NlpstdError(f"cannot reach the KFP API at {host}: {error}") from None
    except TimeoutError as error:  # kfp.Client gives up on healthz after 5 tries
        raise NlpstdError(f"no answer from the KFP API at {host}: {error}") from None


def _server_message(body: bytes | str | None) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()[:300] or "(no message)"
    if isinstance(parsed, dict):
        return str(parsed.get("message") or parsed.get("error") or parsed)[:300]
    return text.strip()[:300]
