"""Feature services: the feature sets models are trained on and served with."""

from feast import FeatureService

# The module, not its views: `feast apply` scans this file's attributes (see feature_views.py).
from features import feature_views

# What the sequential recommender reads for one request: the user's item sequence plus activity
# counters (to tell a new user from a returning one).
recommendation_features = FeatureService(
    name="recommendation_features",
    features=[feature_views.user_recent_items, feature_views.user_activity],
    description="Online features of a user for next-item recommendation.",
)
