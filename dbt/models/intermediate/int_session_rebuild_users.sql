{#-
    The users whose session rows an incremental run must rebuild: everyone with an event, now
    or before this run, on one of var('affected_event_dates') (the event dates whose lake
    content ingestion changed). The previous state is read from int_events_sessionized as it
    stands before this run (this model runs first), so a user whose events were removed from
    an affected date is rebuilt too.
-#}
{%- set dates = var('affected_event_dates', []) -%}
{%- set previous = none -%}
{%- if execute -%}
    {%- set previous = adapter.get_relation(
        database=this.database, schema=this.schema, identifier='int_events_sessionized'
    ) -%}
{%- endif -%}

with

current_users as (
    select distinct user_id
    from {{ ref('stg_lake__events') }}
    where {{ date_in('event_date', dates) }}
),

{% if previous is not none %}
previous_users as (
    select distinct user_id
    from {{ previous }}
    where {{ date_in('event_date', dates) }}
),
{% endif %}

final as (
    select user_id from current_users
    {% if previous is not none %}
    union
    select user_id from previous_users
    {% endif %}
)

select * from final
