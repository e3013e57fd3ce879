{{ config(
    materialized=incremental_by_user_materialization(),
    incremental_strategy='append',
    pre_hook="{{ delete_rebuilt_users() }}",
) }}
-- depends_on: {{ ref('int_session_rebuild_users') }}
with

sessionized as (
    select * from {{ ref('int_events_sessionized') }}
    where {{ rebuilt_users_only() }}
),

final as (
    select
        user_id,
        {{ ordered_list('item_id', ['event_time', 'event_id']) }} as item_ids,
        {{ ordered_list('event_time', ['event_time', 'event_id']) }} as event_times,
        count(*) as n_events,
        min(event_time) as first_event_time,
        max(event_time) as last_event_time
    from sessionized
    group by user_id
)

select * from final
