"""Feature services: the feature sets models are trained on and served with."""

from __future__ import annotations

from typing import NamedTuple

from feast import FeatureService

from features.feature_views import FeatureViews
from features.store import FEATURE_SERVICE


class FeatureServices(NamedTuple):
    recommendation_features: FeatureService


def feature_services(views: FeatureViews) -> FeatureServices:
    """The repo's feature services over ``views``."""
    # What the sequential recommender reads for one request: the user's item sequence plus
    # activity counters (to tell a new user from a returning one).
    recommendation_features = FeatureService(
        name=FEATURE_SERVICE,
        features=[views.user_recent_items, views.user_activity],
        description="Online features of a user for next-item recommendation.",
    )
    return FeatureServices(recommendation_features)
