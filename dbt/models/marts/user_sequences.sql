{#- config, depends_on and the `sessionized` CTE: macros/incremental_by_user.sql -#}
{{ incremental_by_user_mart() }},

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
