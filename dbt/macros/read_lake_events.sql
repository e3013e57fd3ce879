{#-
    Turns the `lake.events` source (whose identifier is the events folder) into something the
    adapter can select from. Going through source() keeps the lake in the lineage graph, while
    the folder is read with each engine's own partition discovery.
-#}
{% macro read_lake_events(source_relation) -%}
    {%- if source_relation.type == 'cte' -%}
        {#- a dbt unit test: its fixture stands in for the lake as a CTE, read as it is -#}
        {{ return(source_relation) }}
    {%- endif -%}
    {{ return(adapter.dispatch('read_lake_events', 'recsys')(source_relation)) }}
{%- endmacro %}

{% macro duckdb__read_lake_events(source_relation) -%}
    {#- event_date=/arrival_date=/part-*.parquet: the two globbed levels are the partitions -#}
    read_parquet(
        '{{ source_relation.identifier }}/*/*/*.parquet',
        hive_partitioning = true,
        union_by_name = true
    )
{%- endmacro %}

{% macro spark__read_lake_events(source_relation) -%}
    parquet.`{{ source_relation.identifier }}`
{%- endmacro %}

{% macro default__read_lake_events(source_relation) -%}
    {{ exceptions.raise_compiler_error(
        "read_lake_events: no reader for adapter '" ~ adapter.type() ~ "'; add a <adapter>__read_lake_events macro"
    ) }}
{%- endmacro %}
