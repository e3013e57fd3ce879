"""The promotion's ``serves_in_api_path`` check: a registered version answers as the API would.

The registry cannot import serving (it sits below it), so the nightly stage passes this function
to :func:`registry.promotion.decide_promotion`.
"""

from __future__ import annotations

from core.settings import Settings

SMOKE_USERS = 5
SMOKE_K = 10


def serves_in_api_path(settings: Settings, version: str) -> tuple[bool, str]:
    """Load ``version`` as serving does and answer smoke requests for a few real users.

    Users come from the last feature export and their features from the Feast online store, as
    in the API. Without a feature export (a registry used without Feast) only the load and the
    model's own smoke request are checked, and the detail says so.
    """
    from registry.versions import ModelLoadError, load_registered_version
    from serving.precompute import active_user_ids
    from serving.answers import answer

    try:
        model = load_registered_version(settings, version)  # includes a smoke request
    except ModelLoadError as exc:
        return False, str(exc)
    try:
        users = active_user_ids(settings)[:SMOKE_USERS]
    except FileNotFoundError:
        return True, (f"v{version} loaded through the serving path and answered a smoke request; "
                      "no feature export, so no online-store read was tried")
    try:
        from features.online_reader import read_user_features
        from features.store import feature_store

        features = read_user_features(feature_store(settings), users + ["__promotion_smoke_unknown__"])
    except Exception as exc:  # noqa: BLE001
        return False, f"online feature read failed: {type(exc).__name__}: {exc}"
    answered = 0
    try:
        for user_id in users:
            rec = answer(model, version, user_id, SMOKE_K, features.get(user_id))
            if not rec.items:
                return False, f"empty answer for user {user_id!r}"
            answered += not rec.fallback
        unknown = answer(model, version, "__promotion_smoke_unknown__", SMOKE_K, None)
        if not unknown.items:
            return False, "empty popularity fallback"
    except Exception as exc:  # noqa: BLE001
        return False, f"model failed on a smoke request: {type(exc).__name__}: {exc}"
    if users and not answered:
        return False, f"none of {len(users)} real users got a model answer (all fell back)"
    return True, (f"v{version} loaded through the serving path; {answered}/{len(users)} real users "
                  "answered from their online features, the unknown user from popularity")
