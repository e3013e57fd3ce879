with

sessionized as (
    select * from {{ ref('int_events_sessionized') }}
),

item_days as (
    select
        item_id,
        event_date as feature_date,
        {{ day_number('event_date') }} as day_number,
        max(event_time) as event_timestamp,
        count(*) as n_events_1d
    from sessionized
    group by item_id, event_date
),

item_user_days as (
    -- distinct users cannot be summed over days, so the week is re-counted from this grain
    select
        item_id,
        user_id,
        {{ day_number('event_date') }} as day_number,
        count(*) as n_events
    from sessionized
    group by item_id, user_id, event_date
),

trailing_week as (
    select
        days.item_id,
        days.feature_date,
        days.event_timestamp,
        days.n_events_1d,
        cast(sum(week.n_events) as bigint) as n_events_7d,
        count(distinct week.user_id) as n_users_7d
    from item_days as days
    inner join item_user_days as week
        on week.item_id = days.item_id
        and week.day_number between days.day_number - 6 and days.day_number
    group by days.item_id, days.feature_date, days.event_timestamp, days.n_events_1d
),

final as (
    select * from trailing_week
)

select * from final
