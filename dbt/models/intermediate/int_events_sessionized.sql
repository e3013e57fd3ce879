{{ config(
    materialized=incremental_by_user_materialization(),
    incremental_strategy='append',
    pre_hook="{{ delete_rebuilt_users() }}",
) }}
{%- set gap_micros = (var('session_gap_minutes', 30) | int) * 60 * 1000000 %}
-- Incremental by user (see macros/incremental_by_user.sql):
-- depends_on: {{ ref('int_session_rebuild_users') }}

with

events as (
    select * from {{ ref('stg_lake__events') }}
    where {{ rebuilt_users_only() }}
),

gap_events as (
    -- only events without a log session id are split by inactivity
    select * from events
    where log_session_id is null
),

gaps as (
    select
        *,
        {{ epoch_micros('event_time') }} - lag({{ epoch_micros('event_time') }}) over (
            partition by user_id
            order by event_time, event_id
        ) as micros_since_previous
    from gap_events
),

gap_session_starts as (
    select
        *,
        -- a gap of exactly the threshold still continues the session
        case
            when micros_since_previous is null then 1
            when micros_since_previous > {{ gap_micros }} then 1
            else 0
        end as is_session_start
    from gaps
),

gap_sessions as (
    select
        *,
        sum(is_session_start) over (
            partition by user_id
            order by event_time, event_id
            rows between unbounded preceding and current row
        ) as user_session_number
    from gap_session_starts
),

sessions_unioned as (
    select
        event_id, event_time, event_date, arrival_date, user_id, log_session_id, item_id,
        event_type,
        concat(user_id, '#', cast(user_session_number as string)) as session_id
    from gap_sessions

    union all

    select
        event_id, event_time, event_date, arrival_date, user_id, log_session_id, item_id,
        event_type,
        concat('log:', log_session_id) as session_id
    from events
    where log_session_id is not null
),

final as (
    select
        *,
        row_number() over (
            partition by user_id, session_id
            order by event_time, event_id
        ) as event_number
    from sessions_unioned
)

select * from final
