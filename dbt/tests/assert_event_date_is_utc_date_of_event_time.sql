-- feature_date in user_features/item_features is the lake's event_date partition; it must be
-- the UTC date of event_time or daily features would be cut at the wrong midnight
select
    event_id,
    event_time,
    event_date
from {{ ref('stg_lake__events') }}
where cast(event_time as date) <> event_date
