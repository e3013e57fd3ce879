"""What the ``feast`` CLI registers: the repo's definitions for ``Settings.from_env()``.

The only module of this folder that ``feast apply`` and ``feast plan`` scan (see .feastignore).
Its sources read the export under the environment's ``RECSYS_HOME``, so run the CLI with the
variables ``python -m features.store env`` prints (see feature_store.yaml). The pipeline never
imports this module: it builds the same objects for its own Settings (features/definitions.py).
"""

from core.settings import Settings
from features.definitions import feature_definitions

# Module attributes, because the CLI collects the Feast objects it finds on the module; it
# registers the sources through the views that read them.
_definitions = feature_definitions(Settings.from_env().feature_data_dir)
user = _definitions.entities.user
item = _definitions.entities.item
user_recent_items = _definitions.feature_views.user_recent_items
user_activity = _definitions.feature_views.user_activity
item_popularity = _definitions.feature_views.item_popularity
item_attributes = _definitions.feature_views.item_attributes
recommendation_features = _definitions.feature_services.recommendation_features
