"""The freshness objectives (PLATFORM_*_FRESHNESS_SLO_S) in Dagster's two forms, for teams without Prometheus.

- **Freshness policies** on the assets (``FreshnessPolicy.time_window``): the daemon evaluates them every
  30 s and the UI shows each asset's state; no run is needed.
- **Freshness checks** built from those same policies (``build_last_update_freshness_checks``) and run by
  their sensor: a check result per evaluation, with history, also where the freshness daemon is off.

Raw tables of the event streams and every mart get one; the reference data (product and profile
changes) does not: it changes when it changes; nor do app errors, whose silence is good news. The
policies are attached where the assets are defined (``defs/ingestion/assets.py``, the dbt translator);
the checks are built from what was attached, so the two always agree.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta

import dagster as dg

from analytics_platform.settings import Settings

FRESHNESS_CHECKS_SENSOR = "freshness_checks_sensor"
FRESHNESS_CHECKS_INTERVAL_S = 60  # each evaluation is a run (~10 s of CPU here): at most one a minute
SPORADIC_TYPES = frozenset({"app_error"})  # event streams whose silence is normal


def _policy(seconds: float) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(seconds=seconds))


def raw_freshness_policy(settings: Settings, event_type: str) -> dg.FreshnessPolicy | None:
    """The policy of ``raw/<event_type>``: none for reference data and app errors (both arrive when they
    arrive: minutes without an error are good news), else PLATFORM_RAW_FRESHNESS_SLO_S."""
    from analytics_platform.warehouse.scd2 import REFERENCE_TYPES

    if event_type in REFERENCE_TYPES or event_type in SPORADIC_TYPES:
        return None
    return _policy(settings.raw_freshness_slo_s)


def marts_freshness_policy(settings: Settings, *, live: bool) -> dg.FreshnessPolicy:
    """The policy of a mart: the live facts' objective, or the full builds'."""
    return _policy(settings.marts_live_freshness_slo_s if live else settings.marts_freshness_slo)


def freshness_windows(assets: Iterable[dg.AssetsDefinition], settings: Settings) -> dict[dg.AssetKey, float]:
    """Seconds of the freshness policy of each asset that has one of the platform's (asset -> window)."""
    objectives = (
        settings.raw_freshness_slo_s,
        settings.marts_live_freshness_slo_s,
        settings.marts_freshness_slo,
    )
    seconds = {_policy(window): window for window in objectives}
    return {
        spec.key: seconds[spec.freshness_policy]
        for assets_def in assets
        for spec in assets_def.specs
        if spec.freshness_policy is not None and spec.freshness_policy in seconds
    }


def freshness_checks(windows: Mapping[dg.AssetKey, float]) -> list[dg.AssetChecksDefinition]:
    """One freshness check per asset (``freshness_check``), grouped into a definition per window."""
    by_window: dict[float, list[dg.AssetKey]] = defaultdict(list)
    for key, window in windows.items():
        by_window[window].append(key)
    checks: list[dg.AssetChecksDefinition] = []
    for window, keys in sorted(by_window.items()):
        assets = sorted(keys, key=dg.AssetKey.to_user_string)
        with _superseded_on_purpose():
            checks += dg.build_last_update_freshness_checks(assets=assets, lower_bound_delta=timedelta(seconds=window))
    return checks


def freshness_checks_sensor(checks: list[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    """Dagster's sensor for the checks: it runs a check again once the asset could be overdue."""
    with _superseded_on_purpose():
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            minimum_interval_seconds=FRESHNESS_CHECKS_INTERVAL_S,
            name=FRESHNESS_CHECKS_SENSOR,
            default_status=dg.DefaultSensorStatus.RUNNING,
        )


@contextlib.contextmanager
def _superseded_on_purpose() -> Iterator[None]:
    """Dagster marks the freshness checks and their sensor superseded by the policies; the platform has both on
    purpose (see the module's docstring), so the warning would only be noise wherever the code location loads."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        yield
