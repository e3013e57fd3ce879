with

sessionized as (
    select * from {{ ref('int_events_sessionized') }}
),

items as (
    select
        item_id,
        count(*) as n_events,
        count(distinct user_id) as n_users,
        count(case when event_type = 'purchase' then 1 end) as n_purchases,
        min(event_time) as first_seen,
        max(event_time) as last_seen
    from sessionized
    group by item_id
),

final as (
    select
        *,
        -- ties broken by item_id so the ranking is the same on every engine and every run
        row_number() over (order by n_events desc, item_id) as popularity_rank
    from items
)

select * from final
