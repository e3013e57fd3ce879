with

source as (
    {#- source() first, so the lake shows in lineage; the macro picks the engine's reader -#}
    {%- set lake_events = source('lake', 'events') %}
    select * from {{ read_lake_events(lake_events) }}
),

renamed as (
    select
        cast(event_id as string) as event_id,
        cast(event_time as timestamp) as event_time,
        cast(event_date as date) as event_date,
        cast(arrival_date as date) as arrival_date,
        cast(user_id as string) as user_id,
        -- an empty id from the client means "no session id", not one shared session
        nullif(trim(cast(session_id as string)), '') as log_session_id,
        cast(item_id as string) as item_id,
        cast(event_type as string) as event_type
    from source
),

admitted as (
    -- arrival days the quality gate rejected stay out until a person re-admits them
    -- (quality/admission.py); before deduplication, so a copy re-sent on another day counts
    select * from renamed
    where not ({{ date_in('arrival_date', var('excluded_arrival_dates', [])) }})
),

deduplicated as (
    -- ingestion deduplicates within one arrival day only; a late re-send of an event lands
    -- in a second arrival_date partition, and the first arrival wins
    select
        *,
        row_number() over (
            partition by event_id
            order by arrival_date, event_time
        ) as arrival_rank
    from admitted
),

final as (
    select
        event_id,
        event_time,
        event_date,
        arrival_date,
        user_id,
        log_session_id,
        item_id,
        event_type
    from deduplicated
    where arrival_rank = 1
)

select * from final
