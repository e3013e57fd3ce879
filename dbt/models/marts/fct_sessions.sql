{#- config, depends_on and the `sessionized` CTE: macros/incremental_by_user.sql -#}
{{ incremental_by_user_mart() }},

sessions as (
    select
        session_id,
        user_id,
        min(event_time) as session_start,
        max(event_time) as session_end,
        count(*) as n_events,
        {{ ordered_list('item_id', ['event_time', 'event_id']) }} as item_ids,
        count(case when event_type = 'view' then 1 end) as n_views,
        count(case when event_type = 'click' then 1 end) as n_clicks,
        count(case when event_type = 'add_to_cart' then 1 end) as n_add_to_cart,
        count(case when event_type = 'purchase' then 1 end) as n_purchases
    from sessionized
    group by session_id, user_id
),

final as (
    select
        session_id,
        user_id,
        session_start,
        session_end,
        cast(
            ({{ epoch_micros('session_end') }} - {{ epoch_micros('session_start') }}) / 1000000.0
            as double
        ) as duration_seconds,
        n_events,
        item_ids,
        n_views,
        n_clicks,
        n_add_to_cart,
        n_purchases,
        n_purchases > 0 as converted
    from sessions
)

select * from final
