{#-
    Incremental session tables are rebuilt per user: a late event can merge, split or renumber
    any later session of its user ('<user_id>#<n>' counts from the user's first session), so an
    affected user's rows are deleted and recomputed from the user's whole history, and nobody
    else's are touched. int_session_rebuild_users says who is affected; the incremental models
    call delete_rebuilt_users() as a pre-hook and filter their input with rebuilt_users_only()
    (the marts through incremental_by_user_mart(), which also configures them).

    DuckDB only: dbt-spark's Parquet tables have no row-level delete, so the Spark target builds
    these models as plain tables (every run is a full rebuild, the same result).
-#}

{% macro incremental_by_user_materialization() -%}
    {{ return('table' if target.type == 'spark' else 'incremental') }}
{%- endmacro %}


{#- Runs inside the model's transaction on DuckDB: readers see the old or the new rows. -#}
{% macro delete_rebuilt_users() -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where user_id in (select user_id from {{ ref('int_session_rebuild_users') }})
    {%- else -%}
        select 1 as nothing_to_delete
    {%- endif -%}
{%- endmacro %}


{% macro rebuilt_users_only(user_column='user_id') -%}
    {%- if is_incremental() -%}
        {{ user_column }} in (select user_id from {{ ref('int_session_rebuild_users') }})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}


{#-
    The head every incremental-by-user mart shares: its config, the dependency on
    int_session_rebuild_users (dbt's parser does not see the refs inside is_incremental()
    branches) and the first CTE, `sessionized`, the sessionized events of the users this run
    rebuilds (everyone's on a full build). The model goes on with `, <next_cte> as (...)`.
-#}
{% macro incremental_by_user_mart() -%}
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
)
{%- endmacro %}
