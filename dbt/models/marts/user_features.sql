{%- set k = var('max_sequence_length', 50) | int -%}
{%- set history = 'partition by user_id order by event_time, event_id' -%}
{#- config, depends_on and the `sessionized` CTE: macros/incremental_by_user.sql -#}
{{ incremental_by_user_mart() }},

running as (
    -- every aggregate ends at the current event, so no row can see a later event
    select
        user_id,
        event_date,
        event_time,
        event_id,
        {{ ordered_list(
            'item_id',
            ['event_time', 'event_id'],
            over=history ~ ' rows between ' ~ (k - 1) ~ ' preceding and current row'
        ) }} as recent_item_ids,
        count(*) over (
            {{ history }} rows between unbounded preceding and current row
        ) as n_events_total,
        count(case when event_number = 1 then 1 end) over (
            {{ history }} rows between unbounded preceding and current row
        ) as n_sessions_total,
        count(case when event_type = 'purchase' then 1 end) over (
            {{ history }} rows between unbounded preceding and current row
        ) as n_purchases_total
    from sessionized
),

last_event_of_day as (
    select
        *,
        row_number() over (
            partition by user_id, event_date
            order by event_time desc, event_id desc
        ) as rank_in_day
    from running
),

final as (
    select
        user_id,
        event_date as feature_date,
        event_time as event_timestamp,
        recent_item_ids,
        n_events_total,
        n_sessions_total,
        n_purchases_total
    from last_event_of_day
    where rank_in_day = 1
)

select * from final
